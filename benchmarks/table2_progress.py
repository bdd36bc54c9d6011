"""Interim per-run table of the Table 2 spatial options (BENCHMARKS "Progress") from the run
reports, before every row has its 6 runs and the ablation its CIs.
    .venv/bin/python benchmarks/table2_progress.py [benchmarks/results/table2-240/reports]
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train.ablate import ROWS  # noqa: E402

R = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/table2-240/reports")
opts = ["heatmap", "local", "attention_distill", "teacher_init", "linear_projection", "spatial_all"]
auc = {}
for f in R.glob("*.json"):
    d = json.loads(f.read_text())
    auc[(f.stem.rsplit("-split", 1)[0], d["split"], d["seed"])] = d["pain_only"]["macro_auroc"]
done = sum(1 for k in auc if k[0] in opts)
print(f"{done} of {6 * len(opts)} option runs")  # 2 splits x 3 seeds each
print("| option | vs | runs done | macro AUROC per run | difference to its base per run |")
print("|---|---|---|---|---|")
for o in opts:
    b = ROWS[o].base
    runs = sorted((s, e) for (k, s, e) in auc if k == o)
    a = ", ".join(f"{auc[(o, s, e)]:.3f}" for s, e in runs)
    d = ", ".join(f"{auc[(o, s, e)] - auc[(b, s, e)]:+.3f}".replace("-", "−") for s, e in runs)
    print(f"| `{o}` | `{b}` | {len(runs)} of 6 | {a} | {d} |")
