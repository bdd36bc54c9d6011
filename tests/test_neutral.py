"""The neutral reference (issue 14): the model's answer depends on the neutral frame, training
rows carry their own neutral frame, and multi-shot evaluation averages N single-shot answers
over the identity's reference frames."""
import numpy as np
import pyarrow as pa
import pytest
import torch

from cluster.config import load_config
from tests.conftest import TINY_CONV, TINY_TRAIN
from train.model import ViTPain

NEUTRAL = ["train.model.neutral_reference=true"]


def _model(extra, base=TINY_TRAIN):
    torch.manual_seed(0)
    return ViTPain(load_config("local", base + NEUTRAL + extra).train.model,
                   weights_follow=True).eval()


@pytest.mark.parametrize("base", [TINY_TRAIN, TINY_CONV], ids=["vit", "conv"])
@pytest.mark.parametrize("shared", [False, True])
def test_the_output_changes_when_only_the_neutral_input_changes(base, shared):
    m = _model([f"train.model.shared_encoder={str(shared).lower()}"], base)
    assert m.fusion.attn.num_heads == 8
    assert hasattr(m, "neutral_backbone") != shared  # a second encoder unless shared
    g = torch.Generator().manual_seed(1)
    x, n1, n2 = (torch.randn(2, 3, 32, 32, generator=g) for _ in range(3))
    with torch.no_grad():
        a, again, b = m(x, n1), m(x, n1), m(x, n2)
    for k in ("pspi_logits", "au", "cls"):
        assert torch.equal(a[k], again[k])
        assert not torch.allclose(a[k], b[k], atol=1e-6), k
    with pytest.raises(ValueError, match="neutral reference"):
        m(x)


def test_fusion_is_a_residual_cross_attention_then_layernorm():
    from train.heads import NeutralFusion

    torch.manual_seed(0)
    f = NeutralFusion(16).eval()
    pain, neutral = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    attended, _ = f.attn(pain, neutral, neutral)
    want = torch.nn.functional.layer_norm(pain + attended, (16,), f.norm.weight, f.norm.bias)
    assert torch.allclose(f(pain, neutral), want, atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 8"):
        NeutralFusion(12)


def test_multi_shot_prediction_averages_single_shot_calls():
    from train.loop import predict

    m = _model(["train.model.head=both"])
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 32, 32, generator=g)
    shots = torch.randn(3, 4, 3, 32, 32, generator=g)  # four references per frame
    batch = {"image": x, "neutral_shots": shots, "pspi": torch.tensor([0, 4, 9]),
             "aus": torch.zeros(3, 6)}
    p = predict(m, [batch], "student", "cpu")
    with torch.no_grad():
        singles = [m(x, shots[:, k]) for k in range(4)]
    probs = torch.stack([s["pspi_logits"].softmax(-1) for s in singles]).mean(0)
    assert np.allclose(torch.from_numpy(p["logits"]).softmax(-1), probs, atol=1e-6)
    assert np.allclose(p["reg"], torch.stack([s["pspi_reg"] for s in singles]).mean(0), atol=1e-6)
    binary = torch.stack([s["binary_logits"].sigmoid() for s in singles]).mean(0)
    assert np.allclose(p["binary"], binary, atol=1e-6)
    assert np.allclose(p["au"], torch.stack([s["au"] for s in singles]).mean(0), atol=1e-6)
    # and one shot is exactly the single call
    one = predict(m, [dict(batch, neutral_shots=shots[:, :1])], "student", "cpu")
    assert np.allclose(one["logits"], singles[0]["pspi_logits"], atol=1e-6)


def test_references_are_the_identitys_neutral_frames_own_first(data10):
    from train import neutral

    (ident, table), = list(neutral.identity_tables(data10, [3]))
    assert ident == 3
    rows = table.to_pylist()
    neutral_ids = {r["sample_id"] for r in rows if r["expression"] == 0}
    assert len(neutral_ids) == 3  # one per view

    def decode(d):  # stands in for image decoding: a frame's "image" is its sample id
        return {"image": np.asarray(d["sample_id"], dtype=object)}

    for shots, k in ((1, 1), (2, 2), (3, 3), (9, 3)):
        got = np.concatenate([b["neutral_shots"] for b in
                              neutral.shot_batches(table, decode, shots, batch=8)])
        assert got.shape == (len(rows), k)
        for r, refs in zip(rows, got):
            assert refs[0] == r["neutral_sample_id"]  # its own view's neutral first
            assert len(set(refs)) == k and set(refs) <= neutral_ids
    # seeded by the row's reference, not by the batch
    a = np.concatenate([b["neutral_shots"] for b in neutral.shot_batches(table, decode, 2, 5)])
    b = np.concatenate([b["neutral_shots"] for b in neutral.shot_batches(table, decode, 2, 64)])
    assert (a == b).all()


def test_training_rows_carry_their_own_neutral_frame(data10):
    import io

    from PIL import Image

    from pipelines.layout3dpain import iter_frames
    from train.neutral import attach

    t = pa.Table.from_batches(list(iter_frames(data10, [1, 2])))
    pain = t.filter(pa.compute.greater(t.column("expression"), 0))  # neutral rows elsewhere
    out = attach(pain.slice(0, 40), data10)  # read from the shards
    same = attach(t, data10)  # found in the batch itself
    image_of = dict(zip(t.column("sample_id").to_pylist(), t.column("image").to_pylist()))
    for r in out.to_pylist() + same.to_pylist():
        assert r["neutral_image"] == image_of[r["neutral_sample_id"]]
    assert Image.open(io.BytesIO(out.column("neutral_image")[0].as_py())).size[0] == 48
    broken = pain.slice(0, 2).set_column(pain.schema.get_field_index("neutral_sample_id"),
                                         "neutral_sample_id", pa.array(["nope", "nope"]))
    with pytest.raises(ValueError, match="neutral_sample_id 'nope'"):
        attach(broken, data10)


def test_evaluation_with_shots_scores_the_averaged_answer(data10, tmp_path):
    from train.data import identity_table, make_split
    from train.evaluate import evaluate
    from train.loop import save_model

    cfg = load_config("local", TINY_TRAIN + NEUTRAL + ["train.model.img_size=32"])
    torch.manual_seed(0)
    save_model(ViTPain(cfg.train.model, weights_follow=True), tmp_path / "m")
    split = make_split(identity_table(path=data10), seed=0)
    one = evaluate(str(tmp_path / "m"), data10, "student", split, "test", shots=1)
    three = evaluate(str(tmp_path / "m"), data10, "student", split, "test", shots=3)
    assert (one["neutral_shots"], three["neutral_shots"]) == (1, 3)
    assert one["frames"] == three["frames"] == 33 * len(split["test"])
    assert one["metrics"]["mae_expected"] != three["metrics"]["mae_expected"]


def test_the_teacher_takes_no_neutral_reference(data10, tmp_path):
    from train.run import train

    cfg = load_config("local", TINY_TRAIN + NEUTRAL + [f"train.storage={tmp_path}"])
    with pytest.raises(ValueError, match="neutral_reference is for the RGB student"):
        train(cfg, "teacher", data10, "t")
    assert not (tmp_path / "t").exists()
