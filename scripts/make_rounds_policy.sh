#!/usr/bin/env bash
# Makes rl-cyclegan's best transfer policy measured so far (docs/results.md, "Q_real's own grasps"):
#   the paper preset's joint training with CycleGAN's identity term, stopped every STEPS_PER_ROUND
#   steps for an on-policy round: Q_real grasps in sim through the run's own G (rlcg collect
#   --translate-with, exploring 0.2), and the untranslated episodes join the run's sim data.
#   After ROUNDS rounds (default 5: 6,000 joint steps) the policy is the run's Q_real.
#   With FINAL=fresh, one more round is collected and a new run starts where this one stopped
#   (rlcg train --init-run --fresh-q-real): G, F, the discriminators and Q_sim carry on, Q_real
#   starts from scratch and gets the sim policy's final round on all the data (4 updates of 64 per
#   joint step, its rate 1e-3 on a cosine) -- what made the shipped sim policy (make_default_policy.sh).
#   With CALIBRATE=yes (the default) the policy's grasp offset is then fitted to the outcomes of the
#   real episodes (rlcg calibrate, at least MIN_GRASPS of them) into WORK_DIR/calibrated, and both
#   policies are evaluated; where the fit fails (say so and why), the trained policy alone.
#   With REAL_ROUNDS=N (default 0), N rounds on real grasps follow (docs/results.md, "Real grasps
#   chosen by the policy itself"): the latest policy, calibrated where the fit succeeded, grasps
#   REAL_EPISODES times in pseudo-real (exploring 0.2; collection seed 10 * (ROUNDS + J + 2) + SEED),
#   those episodes join the real data, and a new run WORK_DIR/own-J carries on from the last one
#   (--init-run) for REAL_STEPS joint steps with Q_real also trained on the real episodes
#   (--real-rl --real-rl-share REAL_SHARE). Round ROUNDS + 1 in sim is collected first, as for FINAL=fresh.
#   The last run is then calibrated (into WORK_DIR/own-N-calibrated) and evaluated.
# Usage (from the repository root, venv active): scripts/make_rounds_policy.sh DATA_DIR [WORK_DIR]
#   DATA_DIR holds the transfer bench's episodes (bag directories or ingested datasets), sim,
#   sim-onpolicy and real-* (every one is used), as `rlcg bench transfer --real-domain pseudo-real
#   --preset paper --out REPORT` leaves them
#   in REPORT/data (real-0, real-1 and real-2 there). WORK_DIR defaults to runs/rounds-$SEED.
#   Re-running with the same WORK_DIR skips the steps that finished (a .done-STEP marker each) and
#   resumes an interrupted training; a re-run may add rounds (ROUNDS, FINAL, REAL_ROUNDS), but other
#   settings than the first run's are refused. The evaluations are redone on each run, into a fresh
#   eval_pseudo-real.jsonl.
#   SEED (0), ROUNDS (5), STEPS_PER_ROUND (1000), EPISODES (5000 a round), FINAL (none|fresh),
#   FINAL_STEPS (2000), CALIBRATE (yes|no), MIN_GRASPS (100), REAL_ROUNDS (0), REAL_EPISODES (1000),
#   REAL_STEPS (1000), REAL_SHARE (0.25), WORKERS (1), THREADS (1), EVAL_EPISODES (300, 0: no evaluation)
#   override.
#   Time on 2 cores, two seeds side by side: about 30 min per 1,000 joint steps, 8 min per round's
#   episodes, 2 h for FINAL=fresh, 30 min per real round.
set -euo pipefail
DATA=${1:?usage: scripts/make_rounds_policy.sh DATA_DIR [WORK_DIR]}
SEED=${SEED:-0}
WORK=${2:-runs/rounds-$SEED}
ROUNDS=${ROUNDS:-5}
STEPS_PER_ROUND=${STEPS_PER_ROUND:-1000}
EPISODES=${EPISODES:-5000}
FINAL=${FINAL:-none}
FINAL_STEPS=${FINAL_STEPS:-2000}
CALIBRATE=${CALIBRATE:-yes}
MIN_GRASPS=${MIN_GRASPS:-100}
REAL_ROUNDS=${REAL_ROUNDS:-0}
REAL_EPISODES=${REAL_EPISODES:-1000}
REAL_STEPS=${REAL_STEPS:-1000}
REAL_SHARE=${REAL_SHARE:-0.25}
WORKERS=${WORKERS:-1}
THREADS=${THREADS:-1}
EVAL_EPISODES=${EVAL_EPISODES:-300}
case "$FINAL" in none | fresh) ;; *) echo "make_rounds_policy.sh: FINAL must be none or fresh, got $FINAL" >&2; exit 2 ;; esac
case "$CALIBRATE" in yes | no) ;; *) echo "make_rounds_policy.sh: CALIBRATE must be yes or no, got $CALIBRATE" >&2; exit 2 ;; esac
case "$REAL_ROUNDS" in '' | *[!0-9]*) echo "make_rounds_policy.sh: REAL_ROUNDS must be a whole number, got $REAL_ROUNDS" >&2; exit 2 ;; esac
REAL=()
for dir in "$DATA"/real-*; do [ -d "$dir" ] && REAL+=("$dir"); done
for dir in "$DATA/sim" "$DATA/sim-onpolicy" "${REAL[0]:-$DATA/real-0}"; do
  if [ ! -d "$dir" ]; then
    echo "make_rounds_policy.sh: $dir is missing; DATA_DIR must hold the bench's datasets sim, sim-onpolicy and real-*" >&2
    exit 2
  fi
done
source "$(dirname "$0")/steps.sh"
# what finished steps depend on (ROUNDS, FINAL and REAL_ROUNDS may grow on a later run: more steps)
recipe "DATA=$DATA SEED=$SEED STEPS_PER_ROUND=$STEPS_PER_ROUND EPISODES=$EPISODES FINAL_STEPS=$FINAL_STEPS" \
    "REAL_EPISODES=$REAL_EPISODES REAL_STEPS=$REAL_STEPS REAL_SHARE=$REAL_SHARE MIN_GRASPS=$MIN_GRASPS"
echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown), seed $SEED, $ROUNDS rounds, final $FINAL, $(date -u +%FT%TZ)"

RUN="$WORK/run"
SIM=("$DATA/sim" "$DATA/sim-onpolicy")
# every setting of the preset's rl-cyclegan run, with the identity term; --resume continues a stopped run
TRAIN=(rlcg train --method rl-cyclegan --batch-size 8
  --q-batch-size 32 --gen-width 16 --gen-blocks 4 --lambda-identity 5 --seed "$SEED" --threads "$THREADS" --resume)

joint() {  # STEPS: the run continued to STEPS joint steps on the sim data so far
  "${TRAIN[@]}" --real-data "${REAL[@]}" --init-q default --sim-data "${SIM[@]}" --steps "$1" --out "$RUN"
}

round() {  # K: Q_real's own grasps in sim, through G (collection seed 10 * (K + 2) + SEED, as in docs/results.md)
  local k=$1
  rm -rf "$WORK/bags/r$k" "$WORK/data/r$k"  # an interrupted collection starts again
  rlcg collect --policy "$RUN/policy" --translate-with "$RUN" --explore 0.2 --episodes "$EPISODES" \
      --seed $((10 * (k + 2) + SEED)) --workers "$WORKERS" --objects train --out "$WORK/bags/r$k"
  rlcg data ingest "$WORK/bags/r$k" --out "$WORK/data/r$k"
}

fresh() {  # the final round: a new run from RUN with a fresh Q_real, on all the data
  "${TRAIN[@]}" --real-data "${REAL[@]}" --init-run "$RUN" --fresh-q-real --q-updates-per-step 4 --q-batch-size 64 --lr-schedule q-cosine \
      --lr-q 1e-3 --sim-data "${SIM[@]}" --steps "$FINAL_STEPS" --out "$WORK/final"
}

own_round() {  # J COLLECTOR: real grasps by COLLECTOR, exploring 0.2, in the domain the real data came from
  local j=$1
  rm -rf "$WORK/bags/own$j" "$WORK/data/own$j"
  rlcg collect --domain pseudo-real --policy "$2" --explore 0.2 --episodes "$REAL_EPISODES" \
      --seed $((10 * (ROUNDS + j + 2) + SEED)) --workers "$WORKERS" --objects train --out "$WORK/bags/own$j"
  rlcg data ingest "$WORK/bags/own$j" --out "$WORK/data/own$j"
}

own_train() {  # J FROM_RUN: the run carried on with Q_real's TD also on the real episodes, own ones included
  "${TRAIN[@]}" --real-data "${REAL[@]}" "${OWN[@]}" --real-rl --real-rl-share "$REAL_SHARE" --init-run "$2" \
      --sim-data "${SIM[@]}" --steps "$REAL_STEPS" --out "$WORK/own-$1"
}

calibrate() {  # POLICY OUT: OUT is POLICY with the grasp offset that explains the preset's real episodes best
  [ "$CALIBRATE" = yes ] || return 1
  local rc=0
  rlcg calibrate --policy "$1" --data "${REAL[@]}" --min-grasps "$MIN_GRASPS" --out "$2" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  if [ "$rc" -ne 2 ]; then  # killed or crashed, not a fit that failed: stop here, a re-run tries again
    echo "make_rounds_policy.sh: rlcg calibrate stopped with status $rc" >&2
    exit "$rc"
  fi
  # the trained policy stands; a failed fit (too few grasps, an offset beyond the bound) only says so
  echo "make_rounds_policy.sh: no calibrated policy (rlcg calibrate failed, above); going on with $1 alone" >&2
  rm -rf "$2"
  return 1
}

SECONDS=0
step joint1 joint "$STEPS_PER_ROUND"
for k in $(seq 1 "$ROUNDS"); do
  step "round$k" round "$k"
  SIM+=("$WORK/data/r$k")
  step "joint$((k + 1))" joint $(((k + 1) * STEPS_PER_ROUND))
done
LAST_RUN="$RUN"
if [ "$FINAL" = fresh ] || [ "$REAL_ROUNDS" -gt 0 ]; then
  k=$((ROUNDS + 1))
  step "round$k" round "$k"
  SIM+=("$WORK/data/r$k")
fi
if [ "$FINAL" = fresh ]; then
  step final fresh
  LAST_RUN="$WORK/final"
fi
OWN=()
CALIBRATED="$WORK/calibrated"
for j in $(seq 1 "$REAL_ROUNDS"); do
  collector="$LAST_RUN/policy"
  if [ ! -e "$WORK/.done-own-round$j" ] && calibrate "$collector" "$CALIBRATED"; then collector="$CALIBRATED"; fi
  step "own-round$j" own_round "$j" "$collector"
  OWN+=("$WORK/data/own$j")
  step "own-$j" own_train "$j" "$LAST_RUN"
  LAST_RUN="$WORK/own-$j"
  CALIBRATED="$WORK/own-$j-calibrated"
done
POLICY="$LAST_RUN/policy"
echo "collection and training: $SECONDS s; the policy: $POLICY"
POLICIES=("$POLICY")
if calibrate "$POLICY" "$CALIBRATED"; then POLICIES+=("$CALIBRATED"); fi
if [ "$EVAL_EPISODES" -gt 0 ]; then
  : > "$WORK/eval_pseudo-real.jsonl"  # this run's evaluations, not appended to an earlier run's
  for policy in "${POLICIES[@]}"; do
    for cem in "" "3 256 12"; do  # QT-Opt's search (the shipped one), then the wider one
      rlcg eval --policy "$policy" --domain pseudo-real --episodes "$EVAL_EPISODES" --workers "$WORKERS" --json \
          ${cem:+--cem $cem} | tee -a "$WORK/eval_pseudo-real.jsonl"
    done
  done
fi
echo "total: $SECONDS s"
