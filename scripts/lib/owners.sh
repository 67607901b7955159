# Shared by scripts/rabbit-cluster.sh, scripts/redis-sentinel.sh and scripts/chromedriver.sh (sourced, not run): their
# command line (`COMMAND DIR ...`, `up DIR --owner PID`, usage from the opening comment), a fixture
# directory DIR guarded by the lock DIR.lock (flock on fd 9), owned by processes listed in
# DIR/owners, and a watchdog that calls the script's `down` once no owner has been alive for
# OWNERS_GRACE seconds. A test process that owns a fixture may die any way it likes (a panic, a
# timeout's SIGKILL): its servers still go, and with them DIR.

OWNERS_GRACE=${OWNERS_GRACE:-5}

# A failure, named after the script (rabbit-cluster: ...).
die() { echo "$(basename "$0" .sh): $*" >&2; exit 1; }

# The script's opening comment, its usage, on stderr; exit 2.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# open_fixture ARGS...: the command line `COMMAND DIR REST...` as CMD, DIR (made absolute) and
# ARGS; for `up`, `--owner PID` is taken out of ARGS into OWNER. The watchdog (`__watch`) runs
# here and never returns; any other command goes on holding DIR.lock.
open_fixture() {
  [ $# -ge 2 ] || usage
  CMD=$1 DIR=$2 OWNER="" ARGS=()
  shift 2
  case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
  while [ $# -gt 0 ]; do
    if [ "$CMD" = up ] && [ "$1" = --owner ] && [ $# -ge 2 ]; then
      OWNER=$2
      shift 2
    else
      ARGS+=("$1")
      shift
    fi
  done
  [ "$CMD" = __watch ] && watch_owners
  lock_fixture
}

# Takes DIR.lock for the rest of the script (children started later must be given `9>&-`, or
# they would hold it).
lock_fixture() {
  exec 9>"$DIR.lock"
  flock 9
}

# add_owner: OWNER, when `up` was given one, owns DIR from now on; the first owner starts the
# watchdog (`SCRIPT __watch DIR`, detached: its own session, no inherited output or lock).
add_owner() {
  [ -n "$OWNER" ] || return 0
  mkdir -p "$DIR/owners"
  : >"$DIR/owners/$OWNER"
  if [ ! -f "$DIR/watched" ]; then
    touch "$DIR/watched"
    setsid bash "$0" __watch "$DIR" </dev/null >/dev/null 2>&1 9>&- &
  fi
}

# The watchdog's loop: once a second, under the lock, forget dead owners; `down` after the grace.
watch_owners() {
  local empty_since="" alive f
  while sleep 1; do
    exec 9>"$DIR.lock"
    flock 9
    [ -d "$DIR" ] || exit 0
    alive=0
    for f in "$DIR"/owners/*; do
      [ -e "$f" ] || continue
      if kill -0 "${f##*/}" 2>/dev/null; then alive=1; else rm -f "$f"; fi
    done
    if ((alive)); then
      empty_since=""
    elif [ -z "$empty_since" ]; then
      empty_since=$SECONDS
    elif ((SECONDS - empty_since >= OWNERS_GRACE)); then
      down
      exit 0
    fi
    exec 9>&-
  done
}

# Free TCP ports on 127.0.0.1, distinct, below the ephemeral range (so that no outgoing
# connection takes one before its server binds it), all held open until printed.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
held = []
while len(held) < int(sys.argv[1]):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(20000, 32000)))
    except OSError:
        s.close()
        continue
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
PY
}
