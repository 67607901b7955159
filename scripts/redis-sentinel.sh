#!/usr/bin/env bash
# A local Redis with Sentinel, for the sentinel tests (tests/tests/sentinel.rs) and for trying a
# fleet by hand: one master, one replica and three sentinels (quorum 2) on 127.0.0.1, on free
# ports, each with its own directory; nothing is persisted to disk. The sentinels declare a
# master down after 1 s without an answer, so a failover takes a few seconds. Needs the Debian
# packages redis-server and redis-sentinel (scripts/services.sh installs them).
#
#   scripts/redis-sentinel.sh up DIR [--owner PID]
#       Creates the servers under DIR, or starts those that are down again (a Redis server comes
#       back as a replica of the current master, as does a master demoted by a failover), and prints its YIZHAN_STATE
#       (redis+sentinel://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/yizhan/0; also in DIR/url). With
#       --owner, PID is one of its owners: once no owner is alive for 5 s, every server is stopped
#       and DIR is deleted. Without, it runs until `down`.
#   scripts/redis-sentinel.sh down DIR           stops every server and deletes DIR
#   scripts/redis-sentinel.sh master DIR         prints the master's port, as the sentinels see it
#   scripts/redis-sentinel.sh kill-master DIR    kills the master (SIGKILL); prints its port
#   scripts/redis-sentinel.sh kill-replica DIR   kills the replica (SIGKILL); prints its port
#
# Every command takes DIR.lock (flock), so concurrent callers see whole servers or none.
set -euo pipefail

MASTER_NAME=yizhan
# shellcheck source=scripts/lib/owners.sh
. "$(dirname "$0")/lib/owners.sh"

# DIR/ports: "redis1 redis2 sentinel1 sentinel2 sentinel3"
port_of() { cut -d' ' -f"$1" "$DIR/ports"; }

running() { # NAME: the server's process lives
  local pid
  pid=$(cat "$DIR/$1/pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

answers() { # PORT
  [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]
}

await_port() { # NAME PORT
  local deadline=$((SECONDS + 20))
  until answers "$2"; do
    running "$1" || die "$1 exited while starting; see $DIR/$1/log"
    ((SECONDS < deadline)) || die "$1 does not answer on port $2; see $DIR/$1/log"
    sleep 0.05
  done
}

start_redis() { # rN [REPLICA_OF_PORT]
  local name=$1 port d="$DIR/$1"
  port=$(port_of "${name#r}")
  mkdir -p "$d"
  local replica=()
  [ -z "${2:-}" ] || replica=(--replicaof 127.0.0.1 "$2")
  # A replica's full sync starts at once (Redis waits 5 s by default for more replicas to join).
  setsid redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$d" \
    --repl-diskless-sync-delay 0 --logfile "$d/log" "${replica[@]}" </dev/null >/dev/null 2>&1 9>&- &
  echo $! >"$d/pid"
  await_port "$name" "$port"
}

start_sentinel() { # sN
  local name=$1 port d="$DIR/$1"
  port=$(port_of $((2 + ${name#s})))
  mkdir -p "$d"
  # Sentinel rewrites its config file with what it learns: one writable file each.
  [ -f "$d/sentinel.conf" ] || cat >"$d/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
dir $d
logfile $d/log
sentinel monitor $MASTER_NAME 127.0.0.1 $(port_of 1) 2
sentinel down-after-milliseconds $MASTER_NAME 1000
sentinel failover-timeout $MASTER_NAME 10000
sentinel parallel-syncs $MASTER_NAME 1
EOF
  setsid redis-sentinel "$d/sentinel.conf" </dev/null >/dev/null 2>&1 9>&- &
  echo $! >"$d/pid"
  await_port "$name" "$port"
}

master_port() { # the master's port by the first sentinel that answers
  local s addr
  for s in 1 2 3; do
    addr=$(redis-cli -p "$(port_of $((2 + s)))" sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null) || continue
    [ -n "$addr" ] && { echo "$addr" | sed -n 2p; return 0; }
  done
  return 1
}

replica_flags() { # SENTINEL_PORT REPLICA_PORT: the flags that sentinel gives that replica
  redis-cli -p "$1" sentinel replicas "$MASTER_NAME" 2>/dev/null | awk -v want="$2" '
    prev == "name" { if (port == want) print flags; port = ""; flags = "" }
    prev == "port" { port = $0 }
    prev == "flags" { flags = $0 }
    { prev = $0 }
    END { if (port == want) print flags }'
}

await_in_sync() { # MASTER_PORT NAME: until the master has the replica online and every sentinel
  # sees it up (a sentinel promotes no replica it still flags down)
  local deadline=$((SECONDS + 30)) port s
  port=$(port_of "${2#r}")
  until redis-cli -p "$1" info replication 2>/dev/null | grep -q "slave[0-9]*:.*port=$port,state=online"; do
    ((SECONDS < deadline)) || die "$2 did not sync with the master on port $1 in 30 s; see $DIR/$2/log"
    sleep 0.05
  done
  for s in 1 2 3; do
    until [ "$(replica_flags "$(port_of $((2 + s)))" "$port")" = slave ]; do
      ((SECONDS < deadline)) || die "sentinel $s does not see $2 up within 30 s"
      sleep 0.05
    done
  done
}

url() {
  echo "redis+sentinel://127.0.0.1:$(port_of 3),127.0.0.1:$(port_of 4),127.0.0.1:$(port_of 5)/$MASTER_NAME/0"
}

create() {
  mkdir -p "$DIR"
  free_ports 5 >"$DIR/ports"
  start_redis r1
  start_redis r2 "$(port_of 1)"
  for s in 1 2 3; do start_sentinel "s$s"; done
  # Ready once the replica is in sync and the sentinels know it and each other (a failover
  # needs all three).
  local deadline=$((SECONDS + 30)) s ok
  while :; do
    ok=1
    redis-cli -p "$(port_of 1)" info replication 2>/dev/null | grep -q 'slave0:.*state=online' || ok=0
    for s in 1 2 3; do
      local info
      info=$(redis-cli -p "$(port_of $((2 + s)))" info sentinel 2>/dev/null) || ok=0
      grep -q "slaves=1,sentinels=3" <<<"$info" || ok=0
    done
    ((ok)) && break
    ((SECONDS < deadline)) || die "the replica did not sync, or the sentinels did not find it and each other, in 30 s"
    sleep 0.1
  done
  url >"$DIR/url"
  touch "$DIR/formed"
}

stop_one() { # NAME
  local pid
  pid=$(cat "$DIR/$1/pid" 2>/dev/null) || return 0
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/$1/pid"
}

down() {
  local name
  for name in s1 s2 s3 r1 r2; do stop_one "$name"; done
  rm -rf "$DIR" "$DIR.lock"
}

open_fixture "$@"
set -- "${ARGS[@]}"

case "$CMD" in
  up)
    [ $# -eq 0 ] || usage
    command -v redis-sentinel >/dev/null || die "redis-sentinel is not installed (scripts/services.sh installs it)"
    add_owner
    if [ -f "$DIR/formed" ]; then
      for s in 1 2 3; do running "s$s" || start_sentinel "s$s"; done
      for r in 1 2; do
        master=$(master_port) || die "no sentinel names a master"
        if running "r$r"; then
          # A master demoted by a failover is made a replica by the sentinels within about 10 s;
          # a test that comes next needs a replica now.
          if [ "$master" != "$(port_of "$r")" ] &&
            redis-cli -p "$(port_of "$r")" role 2>/dev/null | head -1 | grep -qx master; then
            redis-cli -p "$(port_of "$r")" replicaof 127.0.0.1 "$master" >/dev/null
            await_in_sync "$master" "r$r"
          fi
        elif [ "$master" = "$(port_of "$r")" ]; then
          # The sentinels still name the lost server: it comes back as master (empty, its data
          # went with it), as a failover would have had no replica to promote.
          start_redis "r$r"
        else
          start_redis "r$r" "$master"
          await_in_sync "$master" "r$r"
        fi
      done
    else
      [ ! -f "$DIR/ports" ] || { for name in s1 s2 s3 r1 r2; do stop_one "$name"; done; rm -rf "$DIR"/r? "$DIR"/s? "$DIR/ports"; }
      create
    fi
    cat "$DIR/url"
    ;;
  down) down ;;
  master) master_port || die "no sentinel names a master" ;;
  kill-master)
    port=$(master_port) || die "no sentinel names a master"
    for r in 1 2; do
      if [ "$(port_of "$r")" = "$port" ]; then stop_one "r$r"; echo "$port"; exit 0; fi
    done
    die "the master's port $port is none of this setup's servers"
    ;;
  kill-replica)
    port=$(master_port) || die "no sentinel names a master"
    for r in 1 2; do
      if [ "$(port_of "$r")" != "$port" ] && running "r$r"; then stop_one "r$r"; port_of "$r"; exit 0; fi
    done
    die "no replica is running"
    ;;
  *) usage ;;
esac
