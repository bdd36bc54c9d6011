"""Issue 27's property: every command, with --out or --data pointing at a small random tree
of a user's files (names pain3d itself writes among them, forged markers and records, random
bytes), either succeeds and leaves every user file as it was, or fails with one line (exit 2)
and leaves every user file as it was. Hypothesis draws the trees, derandomized (the same
examples in every run) and bounded, so this stays in the fast tier."""
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cluster.cli import main
from tests.conftest import tiny_args
from tests.sandbox import assert_kept, one_error_line, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("ray_local")

# names a user's folder may hold: pain3d's own output names first (the dangerous ones)
NAMES = ["frames", "manifest.json", "run.json", "import", "import.json", "report.html",
         "metrics.md", "metrics.json", "predictions.parquet", ".pain3d-output.json",
         "annotations", "meshes_inpainted", "textured_meshes", "identity=000000.parquet",
         "notes.txt", "thesis.tex", "p.png"]
FORGED = [  # what a user might have copied or typed: pain3d's formats without its records
    b'{"tool": "pain3d", "kind": "report", "owns_root": true, "files": {}}',
    b'{"tool": "pain3d", "kind": "dataset", "owns_root": false}',
    b'{"pain3d_record": "run", "pain3d_sha256": "0", "config_hash": null}',
    b'{"experiment": 7}', b"[]", b"{}", b""]
CONTENT = st.one_of(st.sampled_from(FORGED), st.binary(max_size=48))
TREE = st.dictionaries(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join),
                       CONTENT, max_size=5)
# the target: absent (the command may succeed), a user's file, or a folder of theirs
TARGET = st.one_of(st.just(None), CONTENT.map(lambda b: {"": b}), TREE)


def _write_tree(root: Path, target: Path, tree) -> None:
    """The user's world: a sibling folder and a file beside the target, and the target."""
    (root / "victim").mkdir(parents=True)
    (root / "victim" / "data.csv").write_bytes(b"a,b\n1,2\n")
    (root / "notes.txt").write_bytes(b"my notes")
    if tree is None:
        return
    if "" in tree:  # the target is a file
        target.write_bytes(tree[""])
        return
    target.mkdir()
    for rel, data in tree.items():
        p = target / rel
        if any(q.is_file() for q in [*p.parents][: len(Path(rel).parts) - 1]) or p.is_dir():
            continue  # a name already used as a file (or folder) higher up
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _check(argv, root: Path, target: Path, capsys, may_succeed: bool = True) -> None:
    before = snapshot(root)
    rc, err, lines = run_cli(argv, capsys)
    if rc == 0:
        assert may_succeed, f"{argv} succeeded on a user's tree"
        assert_kept(before, root, made_by_pain3d=[str(target.relative_to(root))])
    else:
        one_error_line(rc, err, lines)
        assert_kept(before, root)


@pytest.fixture(scope="module")
def world(data10, tmp_path_factory):
    """A dataset, its export (the authors' layout) and a tiny checkpoint, read-only inputs."""
    from tests.test_user_data import _bare_checkpoint

    base = tmp_path_factory.mktemp("prop")
    data = base / "data"
    shutil.copytree(data10, data)
    rel = base / "rel"
    assert main(["export", str(data), str(rel)]) == 0
    return {"data": data, "rel": rel, "ck": _bare_checkpoint(base / "ck")}


# each command that writes, with ``out`` as where it writes (w: the world's inputs)
OUTPUTS = {
    "generate": lambda w, out: ["generate", "--out", out, *tiny_args(1, 32, 64)],
    "import 3dpain": lambda w, out: ["import", "3dpain", w["rel"], "--out", out],
    "export": lambda w, out: ["export", w["data"], out],
    "report": lambda w, out: ["report", w["data"], "--out", out],
    "evaluate": lambda w, out: ["evaluate", "--checkpoint", w["ck"], "--data", w["data"],
                                "--split", "all", "--mode", "teacher", "--out", out],
    "preview": lambda w, out: ["preview", "--identities", "1", "--out", out],
}
# each command that reads a dataset, with ``data`` (the user's tree) as that dataset
INPUTS = {
    "export": lambda w, data, other: ["export", data, other],
    "report": lambda w, data, other: ["report", data, "--out", other],
    "evaluate": lambda w, data, other: ["evaluate", "--checkpoint", w["ck"], "--data", data,
                                        "--split", "all", "--mode", "teacher", "--out", other],
    "import 3dpain": lambda w, data, other: ["import", "3dpain", data, "--out", other],
    "train": lambda w, data, other: ["train", "teacher", "--data", data,
                                     f"train.storage={other}", "train.epochs=1"],
}
# the issue's repros, always run besides Hypothesis' draws: a forged "owns the root" marker
# over a user's file (D1), a user's import/ and manifest.json (D2, D3), a foreign run.json
# over a user's frames/ (D4), a user's metrics.md (D5)
REPROS = [
    {".pain3d-output.json": FORGED[0], "mine.txt": b"x"},
    {"import/subjects.csv": b"a", "manifest.json": b"{}"},
    {"run.json": b'{"experiment":7}', "frames/my_labels.csv": b"a"},
    {"metrics.md": b"# my metrics"},
]


def _with_repros(test):
    for tree in reversed(REPROS):
        test = example(tree=tree)(test)
    return test


PROPERTY = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _in_a_users_world(tree, name: str, argv_for, capsys, may_succeed: bool = True) -> None:
    """Build the user's world with ``tree`` at ``name``, run the command, check, clean up."""
    root = Path(tempfile.mkdtemp(prefix="user-"))
    try:
        target = root / name
        _write_tree(root, target, tree)
        _check(argv_for(root, target), root, target, capsys, may_succeed)
    finally:
        shutil.rmtree(root)


# generate and import 3dpain are the long ones (~70 s together): the slow tier runs them
HEAVY_OUTPUTS = ("generate", "import 3dpain")


@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow)
                                     if c in HEAVY_OUTPUTS else c for c in OUTPUTS])
@PROPERTY
@given(tree=TARGET)
@_with_repros
def test_out_at_a_users_tree_keeps_every_user_file(world, command, tree, capsys):
    name = "out.png" if command == "preview" and tree is None else "out"
    _in_a_users_world(tree, name, lambda root, out: OUTPUTS[command](world, out), capsys)


@pytest.mark.parametrize("command", list(INPUTS))
@PROPERTY
@given(tree=TARGET)
@_with_repros
def test_data_at_a_users_tree_keeps_every_user_file(world, command, tree, capsys):
    # a random tree is never a dataset: the command must refuse it, in one line
    _in_a_users_world(tree, "out", lambda root, data: INPUTS[command](world, data,
                                                                      root / "elsewhere"),
                      capsys, may_succeed=False)


def test_the_tree_strategy_draws_pain3d_names_and_forgeries():
    """The strategy reaches the dangerous cases: pain3d's own names, forged markers."""
    seen = set()

    @settings(max_examples=200, derandomize=True, database=None)
    @given(TREE)
    def collect(tree):
        for rel, data in tree.items():
            seen.update(rel.split("/"))
            if data in FORGED[:3]:
                seen.add("forged")

    collect()
    assert {"frames", "manifest.json", "run.json", ".pain3d-output.json", "forged"} <= seen
    assert json.loads(FORGED[0])["tool"] == "pain3d"
