#!/usr/bin/env bash
# Makes the learned default policy shipped in src/rlcg/rlcg/assets/default_policy, from scratch:
#   16k offline grasps (scripted + random) -> train-q -> 10k on-policy grasps -> train-q again.
# 26k grasp attempts in all. Figures and timings of the run that made the shipped checkpoint: docs/results.md.
# Usage: scripts/make_default_policy.sh [WORK_DIR]   (default: runs/default-policy; it must not exist yet)
set -euo pipefail
WORK=${1:-runs/default-policy}
SEED=${SEED:-0}
WORKERS=${WORKERS:-2}
STEPS=${STEPS:-10000}
ASSET=src/rlcg/rlcg/assets/default_policy
if [ -e "$WORK" ]; then echo "$WORK exists; choose another directory" >&2; exit 2; fi
set -x
rlcg collect --policy scripted --episodes 12000 --seed $((SEED + 1)) --workers "$WORKERS" --out "$WORK/bags/scripted"
rlcg collect --policy random --episodes 4000 --seed $((SEED + 2)) --workers "$WORKERS" --out "$WORK/bags/random"
rlcg data ingest "$WORK/bags/scripted" --out "$WORK/data/scripted"
rlcg data ingest "$WORK/bags/random" --out "$WORK/data/random"
rlcg train-q --data "$WORK/data/scripted" "$WORK/data/random:0.3" --steps "$STEPS" --seed "$SEED" --out "$WORK/round1"
rlcg collect --policy "$WORK/round1" --explore 0.2 --episodes 10000 --seed $((SEED + 3)) --workers "$WORKERS" \
    --objects train --out "$WORK/bags/onpolicy"
rlcg data ingest "$WORK/bags/onpolicy" --out "$WORK/data/onpolicy"
rlcg train-q --data "$WORK/data/scripted" "$WORK/data/random:0.3" "$WORK/data/onpolicy" --steps "$STEPS" \
    --seed "$SEED" --out "$WORK/round2"
python -c "import sys; from rlcg.rl.policy import export_policy; export_policy(sys.argv[1], sys.argv[2], sys.argv[3])" \
    "$WORK/round2" "$ASSET" "made by scripts/make_default_policy.sh (seed $SEED)"
rlcg eval --policy "$ASSET" --domain sim --episodes 300 --workers "$WORKERS" --json | tee "$WORK/eval_sim.json"
rlcg eval --policy "$ASSET" --domain pseudo-real --episodes 300 --workers "$WORKERS" --json | tee "$WORK/eval_pseudo_real.json"
