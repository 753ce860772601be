# Sourced by the make_*_policy.sh recipes: WORK must be set. Logs everything to $WORK/log.txt and
# defines recipe, which ties WORK to one set of settings, and step, which runs a recipe step once
# per WORK directory (a .done-NAME marker each), so a re-run skips what finished and redoes what
# was interrupted.
mkdir -p "$WORK"
exec > >(tee -a "$WORK/log.txt") 2>&1

recipe() {  # SETTINGS...: a WORK directory holds one recipe's steps; a re-run with other settings
  # would skip steps made with the first ones and label their result with the new ones
  local file="$WORK/.recipe" want="$*"
  if [ ! -e "$file" ]; then echo "$want" > "$file"; return; fi
  if [ "$(cat "$file")" != "$want" ]; then
    echo "$(basename "$0"): $WORK was made with: $(cat "$file"); this run has: $want; give another WORK_DIR" >&2
    exit 2
  fi
}

step() {  # NAME COMMAND...
  local name=$1; shift
  if [ -e "$WORK/.done-$name" ]; then echo "$name: done before, skipped"; return; fi
  echo "$name: start $(date -u +%FT%TZ)"
  "$@"
  touch "$WORK/.done-$name"
  echo "$name: done after $SECONDS s"
}
