#!/usr/bin/env bash
# A chromedriver for the console's browser tests (tests/tests/console.rs), shared by the test
# processes of one test binary: started on a free port on 127.0.0.1, stopped once none of its
# owners is alive. Each WebDriver session it opens runs its own headless Chromium. Needs the
# Debian packages chromium and chromium-driver (scripts/services.sh installs them).
#
#   scripts/chromedriver.sh up DIR [--owner PID]
#       Starts chromedriver under DIR unless it runs there already, and prints its URL
#       (http://127.0.0.1:PORT; also in DIR/url). With --owner, PID is one of its owners: once no
#       owner is alive for 5 s, chromedriver is stopped and DIR is deleted.
#   scripts/chromedriver.sh down DIR    stops it and deletes DIR
#
# Every command takes DIR.lock (flock), so concurrent callers see one chromedriver or none.
set -euo pipefail

# shellcheck source=scripts/lib/owners.sh
. "$(dirname "$0")/lib/owners.sh"

running() {
  local pid
  pid=$(cat "$DIR/pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

ready() { # PORT: the WebDriver status says ready
  python3 - "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/status", timeout=1) as r:
    sys.exit(0 if json.load(r)["value"]["ready"] else 1)
PY
}

start() {
  local port deadline
  mkdir -p "$DIR"
  port=$(free_ports 1)
  setsid chromedriver --port="$port" --allowed-ips=127.0.0.1 --log-path="$DIR/log" \
    </dev/null >/dev/null 2>&1 9>&- &
  echo $! >"$DIR/pid"
  deadline=$((SECONDS + 30))
  until ready "$port"; do
    running || die "chromedriver exited while starting; see $DIR/log"
    ((SECONDS < deadline)) || die "chromedriver is not ready on port $port after 30 s; see $DIR/log"
    sleep 0.05
  done
  echo "http://127.0.0.1:$port" >"$DIR/url"
}

down() {
  local pid
  pid=$(cat "$DIR/pid" 2>/dev/null) || true
  # Its session browsers are its children: the process group goes with it.
  [ -z "$pid" ] || kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  rm -rf "$DIR" "$DIR.lock"
}

open_fixture "$@"
set -- "${ARGS[@]}"

case "$CMD" in
  up)
    [ $# -eq 0 ] || usage
    command -v chromedriver >/dev/null || die "chromedriver is not installed (scripts/services.sh installs chromium-driver)"
    add_owner
    running || start
    cat "$DIR/url"
    ;;
  down) down ;;
  *) usage ;;
esac
