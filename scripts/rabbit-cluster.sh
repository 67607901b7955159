#!/usr/bin/env bash
# A local RabbitMQ cluster, for the cluster tests (tests/tests/cluster.rs) and for trying a fleet by
# hand: N nodes (default 3) on 127.0.0.1, each with its own node name, AMQP and distribution ports
# (free ones, chosen at creation), data and log directories, and one shared Erlang cookie. The
# system's /etc/rabbitmq is not read and nothing system-wide is changed: the nodes only register
# their names with the machine's epmd. Needs the Debian package rabbitmq-server (scripts/services.sh).
#
#   scripts/rabbit-cluster.sh up DIR [--nodes N] [--owner PID]
#       Creates the cluster under DIR, or starts those of its nodes that are down, waits until
#       every node runs, and prints its YIZHAN_AMQP_URL (the nodes' URLs, comma-separated; also in
#       DIR/urls). With --owner, PID is one of the cluster's owners: once no owner is alive for
#       5 s, the nodes are stopped and DIR is deleted (so a test process that dies leaves nothing
#       behind; several processes may own one cluster). Without, it runs until `down`.
#   scripts/rabbit-cluster.sh down DIR           stops every node and deletes DIR
#   scripts/rabbit-cluster.sh stop-node DIR I    stops node I (1..N), keeping its data
#   scripts/rabbit-cluster.sh start-node DIR I   starts node I again; it rejoins the cluster
#   scripts/rabbit-cluster.sh ctl DIR I ARGS...  runs rabbitmqctl ARGS against node I
#   scripts/rabbit-cluster.sh urls DIR           prints the YIZHAN_AMQP_URL again
#
# Every command takes DIR.lock (flock), so concurrent callers see a whole cluster or none.
set -euo pipefail

SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
# shellcheck source=scripts/lib/owners.sh
. "$(dirname "$0")/lib/owners.sh"

# node_env I: the environment of node I's server and of rabbitmqctl against it.
node_env() {
  local i=$1 d="$DIR/n$1"
  local name amqp dist
  read -r name amqp dist < <(sed -n "${i}p" "$DIR/nodes")
  echo HOME="$d/home" RABBITMQ_NODENAME="$name" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$amqp" RABBITMQ_DIST_PORT="$dist" RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" ERL_EPMD_ADDRESS=127.0.0.1
}

node_name() { sed -n "${1}p" "$DIR/nodes" | cut -d' ' -f1; }

ctl() { # I ARGS...
  local i=$1; shift
  # shellcheck disable=SC2046
  env $(node_env "$i") RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    "$CTL" -q -n "$(node_name "$i")" "$@" 9>&-
}

ctl_or_die() { # I ARGS...: ctl, its output shown only when it fails
  local out
  out=$(ctl "$@" 2>&1) || die "rabbitmqctl ${*:2} on node $1 failed: $out"
}

running() { # I: the node's VM is alive
  local pid
  pid=$(cat "$DIR/n$1/pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

start_vm() { # I: starts the node's VM in a process group of its own
  local i=$1
  running "$i" && return 0
  # shellcheck disable=SC2046
  env $(node_env "$i") RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    setsid "$SERVER" >>"$DIR/n$i/server.out" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/n$i/pid"
}

await_node() { # I: waits until RabbitMQ runs on node I (await_startup fails at once until the VM
  # has registered with epmd, so it is asked again while the VM lives)
  local i=$1 deadline=$((SECONDS + 120))
  until ctl "$i" await_startup --timeout 60 >/dev/null 2>&1; do
    running "$i" || die "node $i exited while starting; see $DIR/n$i/server.out"
    ((SECONDS < deadline)) || die "node $i did not start in 120 s; see $DIR/n$i/server.out"
    sleep 0.3
  done
}

stop_node() { # I: a clean stop, then the process group (the start script and the VM under it)
  local i=$1 pid
  running "$i" || return 0
  pid=$(cat "$DIR/n$i/pid")
  ctl "$i" stop >/dev/null 2>&1 || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$DIR/n$i/pid"
}

create() { # N
  local n=$1 cookie ports i
  mkdir -p "$DIR"
  cookie=$(python3 -c 'import secrets; print(secrets.token_hex(16).upper())')
  read -r -a ports <<<"$(free_ports $((2 * n)))"
  local tag
  tag=$(python3 -c 'import secrets; print(secrets.token_hex(3))')
  : >"$DIR/nodes.tmp"
  for i in $(seq 1 "$n"); do
    echo "yzc-$tag-$i@localhost ${ports[$((2 * i - 2))]} ${ports[$((2 * i - 1))]}" >>"$DIR/nodes.tmp"
    local d="$DIR/n$i"
    mkdir -p "$d/home"
    printf '%s' "$cookie" >"$d/home/.erlang.cookie"
    chmod 400 "$d/home/.erlang.cookie" # Erlang refuses a cookie others can read
    echo '[].' >"$d/enabled_plugins"
    : >"$d/rabbitmq-env.conf"
    echo 'loopback_users = none' >"$d/rabbitmq.conf"
  done
  mv "$DIR/nodes.tmp" "$DIR/nodes"
  # Every VM boots at once; then the others join the first one's cluster.
  for i in $(seq 1 "$n"); do start_vm "$i"; done
  for i in $(seq 1 "$n"); do await_node "$i"; done
  for i in $(seq 2 "$n"); do
    ctl_or_die "$i" stop_app
    ctl_or_die "$i" join_cluster "$(node_name 1)"
    ctl_or_die "$i" start_app
    await_node "$i"
  done
  urls >"$DIR/urls"
  touch "$DIR/formed"
}

urls() {
  local out=() name amqp dist
  while read -r name amqp dist; do out+=("amqp://guest:guest@127.0.0.1:$amqp/%2f"); done <"$DIR/nodes"
  (IFS=,; echo "${out[*]}")
}

down() {
  if [ -f "$DIR/nodes" ]; then
    local n
    n=$(wc -l <"$DIR/nodes")
    for i in $(seq 1 "$n"); do stop_node "$i" & done
    wait
  fi
  rm -rf "$DIR" "$DIR.lock"
}

open_fixture "$@"
set -- "${ARGS[@]}"

case "$CMD" in
  up)
    nodes=3
    while [ $# -gt 0 ]; do
      case "$1" in
        --nodes) nodes=$2; shift 2 ;;
        *) usage ;;
      esac
    done
    [ -x "$SERVER" ] || die "rabbitmq-server is not installed (scripts/services.sh installs it)"
    add_owner
    if [ -f "$DIR/formed" ]; then
      # Nodes stopped (or lost) since come back; the running ones are left alone.
      n=$(wc -l <"$DIR/nodes") restarted=()
      for i in $(seq 1 "$n"); do running "$i" || { start_vm "$i"; restarted+=("$i"); }; done
      for i in "${restarted[@]}"; do await_node "$i"; done
    else
      # A cluster whose creation was interrupted is made again from scratch.
      if [ -f "$DIR/nodes" ]; then
        for i in $(seq 1 "$(wc -l <"$DIR/nodes")"); do stop_node "$i"; done
        rm -rf "$DIR"/n* "$DIR/nodes"
      fi
      create "$nodes"
    fi
    cat "$DIR/urls"
    ;;
  down) down ;;
  stop-node) [ $# -eq 1 ] || usage; stop_node "$1" ;;
  start-node) [ $# -eq 1 ] || usage; start_vm "$1"; await_node "$1" ;;
  ctl) [ $# -ge 2 ] || usage; i=$1; shift; ctl "$i" "$@" ;;
  urls) urls ;;
  *) usage ;;
esac
