#!/usr/bin/env bash
# Makes the learned default policy shipped in src/rlcg/rlcg/assets/default_policy, from scratch, on CPU:
#   16k offline grasps (scripted + random) -> train-q -> 8k on-policy grasps -> train-q
#   -> 6k on-policy grasps -> train-q: 30k simulated grasp attempts in all (the policy issue's budget).
# The run that made the shipped checkpoint, with its timings and results: docs/results.md.
# Usage (from the repository root, venv active): scripts/make_default_policy.sh [WORK_DIR]
#   WORK_DIR defaults to runs/default-policy and must not exist yet. SEED, WORKERS, STEPS override.
set -euo pipefail
WORK=${1:-runs/default-policy}
SEED=${SEED:-0}
WORKERS=${WORKERS:-2}
STEPS=${STEPS:-6000}
ASSET=src/rlcg/rlcg/assets/default_policy
if [ -e "$WORK" ]; then echo "$WORK exists; choose another directory" >&2; exit 2; fi
mkdir -p "$WORK"
exec > >(tee -a "$WORK/log.txt") 2>&1
echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown), seed $SEED, $(date -u +%FT%TZ)"
set -x

collect() {  # NAME POLICY EPISODES SEED_OFFSET [extra collect args]
  local name=$1 policy=$2 n=$3 off=$4; shift 4
  rlcg collect --policy "$policy" --episodes "$n" --seed $((SEED + off)) --workers "$WORKERS" --objects train \
      --out "$WORK/bags/$name" "$@"
  rlcg data ingest "$WORK/bags/$name" --out "$WORK/data/$name"
}

SECONDS=0
collect scripted scripted 12000 1
collect random random 4000 2
rlcg train-q --data "$WORK/data/scripted" "$WORK/data/random:0.3" --steps "$STEPS" --seed "$SEED" --out "$WORK/round1"
collect onpolicy1 "$WORK/round1" 8000 3 --explore 0.2
rlcg train-q --data "$WORK/data/scripted" "$WORK/data/random:0.3" "$WORK/data/onpolicy1" --steps "$STEPS" \
    --seed "$SEED" --out "$WORK/round2"
collect onpolicy2 "$WORK/round2" 6000 4 --explore 0.1
rlcg train-q --data "$WORK/data/scripted" "$WORK/data/random:0.3" "$WORK/data/onpolicy1" "$WORK/data/onpolicy2" \
    --steps $((STEPS * 4 / 3)) --seed "$SEED" --out "$WORK/round3"
echo "collection and training: $SECONDS s"
python -c "import sys; from rlcg.rl.policy import export_policy; export_policy(*sys.argv[1:])" \
    "$WORK/round3" "$ASSET" "made by scripts/make_default_policy.sh (seed $SEED)"
rlcg eval --policy "$ASSET" --domain sim --episodes 300 --workers "$WORKERS" --json | tee "$WORK/eval_sim.json"
rlcg eval --policy "$ASSET" --domain sim --bins multi --episodes 300 --workers "$WORKERS" --json \
    | tee "$WORK/eval_sim_multi.json"
rlcg eval --policy "$ASSET" --domain pseudo-real --episodes 300 --workers "$WORKERS" --json \
    | tee "$WORK/eval_pseudo_real.json"
echo "total: $SECONDS s"
