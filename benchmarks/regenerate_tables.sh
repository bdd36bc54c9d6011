#!/usr/bin/env bash
# Every BENCHMARKS.md table that depends on generated data, regenerated in one background job
# with the commands printed beside each table (Table 2 on 240 identities first, as step table2).
# Resumable: a finished step leaves benchmarks/regen_out/<step>.done and is skipped; an
# interrupted ablation or crossval continues (--resume). Logs: regen_out/<step>.log.
#   nohup bash benchmarks/regenerate_tables.sh > benchmarks/regen_out/all.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
P=.venv/bin/pain3d
PY=.venv/bin/python
OUT=benchmarks/regen_out
mkdir -p "$OUT"

step() {  # step NAME COMMAND...: runs once, logged, timed
  local name=$1; shift
  if [ -f "$OUT/$name.done" ]; then echo "$name: done earlier"; return; fi
  echo "[$(date +%T)] $name: $*"
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  echo "[$(date +%T)] $name: $((SECONDS - t0)) s"
  touch "$OUT/$name.done"
}

resume_if() {  # --resume when the ablation or sweep folder exists
  [ -d "$1" ] && echo --resume || true
}

shots() {  # issue 14: single- against three-shot scoring of the neutral-reference runs
  for s in 0 1 2; do for n in 1 3; do
    [ -f "runs/issue14/shots/s$s-n$n/metrics.md" ] && continue
    $P evaluate --data data/pain3d-120 \
      --checkpoint "$(cat "runs/issue14/neutral_reference-seed$s/best_checkpoint.txt")" \
      --neutral-shots "$n" --out "runs/issue14/shots/s$s-n$n"
  done; done
}

demo_seeds() {  # issue 16: the demo over three seeds
  for s in 0 1 2; do $P demo --out "demo-s$s" --seed "$s"; done
}

table2() {  # issue 31: Table 2 on 240 identities, every row; the committed records are read back
  mkdir -p runs/table2-240
  cp -rn benchmarks/results/table2-240/reports benchmarks/results/table2-240/scored runs/table2-240/
  $P ablate --data data/pain3d-240 --splits 2 --seeds 3 --name table2-240 --resume --rows \
    baseline,au_queries,au_queries_distill,teacher,heatmap,local,attention_distill,teacher_init,linear_projection,spatial_all
  cp -ru runs/table2-240/reports runs/table2-240/scored runs/table2-240/ablation.md \
    benchmarks/results/table2-240/  # the records to commit
}

[ -f data/pain3d-240/manifest.json ] || step data240 $P generate --identities 240 --out data/pain3d-240
step table2 table2
[ -f data/pain3d-120/manifest.json ] || step data120 $P generate --identities 120 --out data/pain3d-120
[ -f data/pain3d-s7-25/manifest.json ] || step data_s7 $P generate --identities 25 --seed 7 --out data/pain3d-s7-25
step rig $PY benchmarks/rig.py --data data/pain3d-120 --seeds 0 1 2
step encoder $PY benchmarks/encoder.py --data data/pain3d-120 --seeds 0 1 2
step fusion $PY benchmarks/fusion.py --data data/pain3d-120 --seeds 3
step issue14 $P ablate --data data/pain3d-120 --seeds 3 --name issue14 \
  --rows au_queries,neutral_reference,lora train.eval.neutral_shots=3 $(resume_if runs/issue14)
step issue14_shots shots
step issue14_regression $P ablate --data data/pain3d-120 --seeds 3 --rows regression \
  --name issue14-regression $(resume_if runs/issue14-regression)
step demo demo_seeds
echo "all steps done"
