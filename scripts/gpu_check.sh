#!/usr/bin/env bash
# The checks of rlcg that need a CUDA GPU, in one run (a lent GPU machine is held by the minute):
#   1. tests/test_cuda.py and tests/test_device.py;
#   2. commands on real data: train-q, train rl-cyclegan (bf16, channels_last, fused Adam, --real-rl)
#      and its --resume, translate and calibrate with --device cuda (calibrate also on the CPU, to
#      compare); export-q and eval-data of the run (on the CPU); and a default-options rl-cyclegan run
#      whose logged steps/s are printed;
#   3. the GPU figures of docs/benchmarks.md: bench train on the CPU and on the GPU (ablation at batch 8
#      and 64; cuDNN's autotuner), and, with OLD_SRC, the same bench of another source tree, the two
#      taking turns;
#   4. a profile of the rl-cyclegan step (scripts/gpu_profile.py): kernel time against wall time.
#
#   [PARTS="tests train bench profile"] scripts/gpu_check.sh DATA OUT [OLD_SRC]
#
# DATA holds two datasets, sim/ and real/ (`rlcg data ingest`), made on a machine with PyBullet; OUT
# receives log.txt (everything), pytest.txt, bench.jsonl (one JSON object a line, labelled),
# profile.jsonl and a training image grid; what an earlier run left there is replaced. OLD_SRC is the
# src/rlcg directory of another commit (git archive; say which in OLD_COMMIT), for a same-run ratio.
# rlcg runs from this checkout (PYTHONPATH); its dependencies must be importable.
# docs/benchmarks.md's DATA: `rlcg collect --policy scripted --explore 0.3 --episodes 120 --workers 2`
# with --seed 11 (sim) and with --domain pseudo-real --seed 12 (real), each then `rlcg data ingest`.
# DEVICE=cpu runs it all on the CPU (but the profile): a dry run, before a GPU is lent. PARTS picks
# the sections to run (default: all four).
set -uo pipefail
DATA=${1:?usage: scripts/gpu_check.sh DATA OUT [OLD_SRC]}
OUT=${2:?usage: scripts/gpu_check.sh DATA OUT [OLD_SRC]}
OLD=${3:-}
DEVICE=${DEVICE:-cuda}
PARTS=" ${PARTS:-tests train bench profile} "
for part in $PARTS; do
  case $part in tests | train | bench | profile) ;; *) echo "unknown part '$part': tests, train, bench or profile" >&2; exit 2 ;; esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT"
DATA=$(realpath "$DATA") OUT=$(realpath "$OUT")
[ -z "$OLD" ] || OLD=$(realpath "$OLD")
cd "$ROOT" || exit
rm -f "$OUT/log.txt" "$OUT/pytest.txt" "$OUT/bench.jsonl" "$OUT/profile.jsonl" "$OUT/train_grid.png"
NEW_PATH="$ROOT/src/rlcg${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LOG="$OUT/log.txt"
failures=()

step() {  # step NAME COMMAND...: run, log, remember a failure, go on
  local name=$1
  shift
  echo "=== $name: $*" | tee -a "$LOG"
  local t0=$SECONDS
  if "$@" >>"$LOG" 2>&1; then
    echo "--- $name: ok in $((SECONDS - t0)) s" | tee -a "$LOG"
  else
    echo "--- $name: FAILED (exit $?) in $((SECONDS - t0)) s" | tee -a "$LOG"
    failures+=("$name")
  fi
}
rlcg() { PYTHONPATH="$NEW_PATH" python3 -m rlcg "$@"; }
old_rlcg() {  # the other tree's code with this checkout's config/ (it may predate python -m rlcg)
  RLCG_CONFIG_DIR="$ROOT/config" PYTHONPATH="$OLD${PYTHONPATH:+:$PYTHONPATH}" python3 -c \
    'import sys; from rlcg.cli import main; sys.exit(main(sys.argv[1:]))' "$@"
}
bench() {  # bench LABEL COMMAND...: one JSON line into bench.jsonl, labelled
  local label=$1
  shift
  echo "=== bench $label: $*" | tee -a "$LOG"
  local json
  if json=$("$@" 2>>"$LOG"); then
    printf '{"label": "%s", "result": %s}\n' "$label" "$json" >>"$OUT/bench.jsonl"
    echo "--- bench $label: ok" | tee -a "$LOG"
  else
    echo "--- bench $label: FAILED" | tee -a "$LOG"
    failures+=("bench $label")
  fi
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>&1 || true
  PYTHONPATH="$NEW_PATH" python3 -c 'import sys, torch, numpy; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("numpy", numpy.__version__); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  nproc
  git log -1 --format='this tree: %h %s' 2>/dev/null && git status --short | head -5
  [ -z "$OLD" ] || echo "OLD_SRC: $OLD (${OLD_COMMIT:-commit not given})"
} >>"$LOG" 2>&1
cat "$LOG"

# 1. the tests (PyBullet has no wheel for every Python a GPU machine may have: then the two device
# checks of commands that load the simulator first are left out, and the log says so)
if [[ $PARTS == *" tests "* ]]; then
deselect=()
if ! PYTHONPATH="$NEW_PATH" python3 -c "import pybullet" >/dev/null 2>&1; then
  echo "no pybullet here: the device checks of collect/eval/sim are left out" | tee -a "$LOG"
  deselect=(--deselect "tests/test_device.py::test_cli_checks_the_device_before_any_work[collect]"
    --deselect tests/test_device.py::test_a_device_for_a_policy_that_uses_none_is_refused)
fi
step pytest env PYTHONPATH="$NEW_PATH" RLCG_TEST_DEVICE="$DEVICE" python3 -m pytest -q -rs -p no:cacheprovider \
  -o addopts="" ${deselect[@]+"${deselect[@]}"} tests/test_cuda.py tests/test_device.py
grep -E "passed|failed|error|SKIP" "$LOG" | tail -5 >"$OUT/pytest.txt"
fi

# 2. a training run on real data
R=$WORK/runs
if [[ $PARTS == *" train "* ]]; then
step train-q rlcg train-q --data "$DATA/sim" --steps 200 --batch-size 64 --device "$DEVICE" --no-progress --out "$R/q"
step train rlcg train --method rl-cyclegan --sim-data "$DATA/sim" --real-data "$DATA/real" --real-rl \
  --steps 150 --checkpoint-every 100 --bf16 --channels-last --fused-adam --device "$DEVICE" --no-progress --out "$R/rlcg"
step resume rlcg train --method rl-cyclegan --sim-data "$DATA/sim" --real-data "$DATA/real" --real-rl \
  --steps 200 --checkpoint-every 100 --bf16 --channels-last --fused-adam --device "$DEVICE" --no-progress \
  --out "$R/rlcg" --resume
step export-q rlcg export-q "$R/rlcg" --net Q_sim --out "$R/q_sim"
step translate rlcg translate "$R/rlcg" --data "$DATA/sim" --out "$R/translated" --device "$DEVICE" --no-progress
step eval-data rlcg eval-data --policy "$R/rlcg/policy" --data "$DATA/real" --json
# the shipped policy's offset fit to sim grasps, on the device and on the CPU: the two must agree
step calibrate rlcg calibrate --policy default --data "$DATA/sim" --out "$R/calibrated" --device "$DEVICE" --json
step calibrate-cpu rlcg calibrate --policy default --data "$DATA/sim" --out "$R/calibrated-cpu" --device cpu --json
grid=$(ls "$R/rlcg/images/"*.png 2>/dev/null | tail -1)
[ -n "$grid" ] && cp "$grid" "$OUT/train_grid.png"
# the step rate of a training run with the default options, as its TensorBoard log has it
step train-rate rlcg train --method rl-cyclegan --sim-data "$DATA/sim" --real-data "$DATA/real" --steps 300 \
  --device "$DEVICE" --no-progress --out "$R/rate"
step read-rate env PYTHONPATH="$NEW_PATH" python3 -c '
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
events = EventAccumulator(sorted(glob.glob(sys.argv[1] + "/**/events.*", recursive=True))[0])
events.Reload()
for tag in events.Tags()["scalars"]:
    if tag.endswith("steps_per_s"):
        print(tag, [(s.step, round(s.value, 2)) for s in events.Scalars(tag)])
' "$R/rate"
fi

# 3. benchmarks (steps/s; the GPU ones after the others so that a slow start costs only them)
if [[ $PARTS == *" bench "* ]]; then
bench cpu_new rlcg bench train --json --devices cpu
bench gpu_ablation rlcg bench train --json --devices "$DEVICE" --ablation --repeats 3
bench gpu_batch64 rlcg bench train --json --devices "$DEVICE" --batch-size 64 --ablation --repeats 3
bench gpu_cudnn_benchmark env PYTHONPATH="$NEW_PATH" python3 -c \
  'import sys, torch; torch.backends.cudnn.benchmark = True; from rlcg.cli import main; sys.exit(main(sys.argv[1:]))' \
  bench train --json --devices "$DEVICE"
if [ -n "$OLD" ]; then
  for round in 1 2 3; do  # the two trees take turns, so that a slow spell hits both
    bench "gpu_new_$round" rlcg bench train --json --devices "$DEVICE" --steps 20
    bench "gpu_old_$round" old_rlcg bench train --json --devices "$DEVICE" --steps 20
  done
fi
fi

# 4. profile
if [[ $PARTS == *" profile "* && $DEVICE == cuda* ]]; then
  echo "=== profile" | tee -a "$LOG"
  PYTHONPATH="$NEW_PATH" python3 scripts/gpu_profile.py --device "$DEVICE" --batch-sizes 8 64 --steps 20 \
    >"$OUT/profile.jsonl" 2>>"$LOG" || failures+=(profile)
  cat "$OUT/profile.jsonl" | tee -a "$LOG"
fi

echo "failures: ${#failures[@]} ${failures[*]-}" | tee -a "$LOG"
[ -f "$OUT/bench.jsonl" ] && PYTHONPATH="$NEW_PATH" python3 - "$OUT/bench.jsonl" <<'EOF' | tee -a "$LOG"
import json, sys
for line in open(sys.argv[1]):
    row = json.loads(line)
    for device, rates in row["result"]["devices"].items():
        cells = " ".join(f"{k.removesuffix('_steps_per_s')}={v:.2f}" for k, v in rates.items() if k.endswith("_per_s"))
        hot = rates.get("hot_path", {})
        extra = " | " + " ".join(f"{k}={v:.2f}" for k, v in hot.items()) if hot else ""
        print(f"{row['label']:<20} {device:<6} b{row['result']['batch_size']} {cells}{extra}")
EOF
[ ${#failures[@]} -eq 0 ]
