"""Exploratory contrasts of Table 2 (BENCHMARKS, issue 31) that the ablation does not pair:
what the teacher adds beyond heatmap regression and heatmap regression beyond the teacher's
backbone, and the spatial student against the baseline. The same cluster bootstrap
(identities x seeds, the ablation's seed, so the same resamples) over the committed scored
frames, read back as `ablate --resume` reads them; Holm over these contrasts only. Chosen
after the ablation's own comparisons were seen: read them as exploratory.
    .venv/bin/python benchmarks/table2_contrasts.py [benchmarks/results/table2-240]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cluster.config import load_config  # noqa: E402
from pipelines.storage import resolve  # noqa: E402
from train.ablate import _finished  # noqa: E402
from train.stats import compare, holm, replicates  # noqa: E402

CONTRASTS = [("spatial_all", "heatmap"), ("spatial_all", "teacher_init"),
             ("teacher_init", "au_queries"), ("spatial_all", "baseline")]
root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/table2-240")
loc, wanted = resolve(str(root.parent)), {r for c in CONTRASTS for r in c}
rows = {}
for rec in sorted((root / "reports").glob("*.json")):
    row = rec.stem.rsplit("-split", 1)[0]
    if row in wanted:  # (checkpoint, report, scored frames)
        rows.setdefault(row, []).append(_finished(loc, root.name, rec.stem)[2])
assert all(len(v) == 6 for v in rows.values()), {k: len(v) for k, v in rows.items()}
rep = replicates(rows, reps=1000, seed=load_config("local", []).seed)  # the ablation's
comps = [compare(rep[b], rep[a]) for a, b in CONTRASTS]
print("| model | vs | difference | 95% CI | p | Holm p (these 4) | detectable at 80% power |")
print("|---|---|---|---|---|---|---|")
for (a, b), c, p in zip(CONTRASTS, comps, holm([c["p"] for c in comps])):
    print(f"| `{a}` | `{b}` | {c['mean']:+.3f} | [{c['lo']:+.3f}, {c['hi']:+.3f}] | "
          f"{c['p']:.3f} | {p:.3f} | ±{c['mde']:.3f} |")
