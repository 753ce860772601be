# Sourced by the make_*_policy.sh recipes: WORK must be set. Logs everything to $WORK/log.txt and
# defines step, which runs a recipe step once per WORK directory (a .done-NAME marker each), so
# a re-run skips what finished and redoes what was interrupted.
mkdir -p "$WORK"
exec > >(tee -a "$WORK/log.txt") 2>&1

step() {  # NAME COMMAND...
  local name=$1; shift
  if [ -e "$WORK/.done-$name" ]; then echo "$name: done before, skipped"; return; fi
  echo "$name: start $(date -u +%FT%TZ)"
  "$@"
  touch "$WORK/.done-$name"
  echo "$name: done after $SECONDS s"
}
