#!/usr/bin/env bash
# The whole local stack in one command: RabbitMQ and Redis (started or installed if needed), the
# provider sandbox, a worker and the producer; submits examples/jobs.jsonl (SMS, robot messages,
# a duplicate, a throttled and a blacklisted number, two invalid lines) and prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
echo "==> building"
cargo build --workspace --bins --quiet
BIN=target/debug
DEMO=target/demo; rm -rf "$DEMO"; mkdir -p "$DEMO"
SANDBOX_ADDR=${YIZHAN_SANDBOX_ADDR:-127.0.0.1:18080}
export YIZHAN_PREFIX="yizhan-demo-$$" YIZHAN_CONFIG="$DEMO/yizhan.toml" YIZHAN_STATE="sqlite://$DEMO/state.db" \
       YIZHAN_METRICS_ADDR=127.0.0.1:19464 YIZHAN_RETRY_DELAYS=1s,2s RUST_LOG=${RUST_LOG:-info}
export DEMO_SMS_SECRET_KEY=sandbox-secret-key   # read by the config below as "${DEMO_SMS_SECRET_KEY}"

cat > "$YIZHAN_CONFIG" <<TOML
[connectors.tencent_sms.default]
secret_id = "AKIDsandbox0000000000000000000000000"
secret_key = "\${DEMO_SMS_SECRET_KEY}"
sdk_app_id = "1400000000"
endpoint = "http://$SANDBOX_ADDR"

[connectors.wecom_robot.ops]
key = "sandbox-robot-key"
endpoint = "http://$SANDBOX_ADDR"
TOML

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for q in jobs.high jobs.normal jobs.bulk dead delay.1s delay.2s; do
    rabbitmqctl -q delete_queue "$YIZHAN_PREFIX.$q" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

echo "==> starting the provider sandbox on $SANDBOX_ADDR"
"$BIN/yizhan-sandbox" --listen "$SANDBOX_ADDR" >"$DEMO/sandbox.log" 2>&1 & pids+=($!)
echo "==> starting a worker (logs: $DEMO/worker.log)"
"$BIN/yizhan-worker" >"$DEMO/worker.log" 2>&1 & pids+=($!)
for _ in $(seq 1 120); do curl -fs "http://$YIZHAN_METRICS_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.25; done
curl -fs "http://$YIZHAN_METRICS_ADDR/readyz" >/dev/null || { echo "worker did not start:"; cat "$DEMO/worker.log"; exit 1; }

echo "==> programming the sandbox: +8613800000005 throttled once, +8613800000006 blacklisted"
curl -fs -X POST "http://$SANDBOX_ADDR/_sandbox/faults" -H 'content-type: application/json' -d '[
  {"effect":{"type":"tencent_error","code":"RequestLimitExceeded"},"phone":"+8613800000005","times":1},
  {"effect":{"type":"tencent_number_status","code":"FailedOperation.PhoneNumberInBlacklist"},"phone":"+8613800000006","times":0}]' >/dev/null

echo "==> yizhan-producer submit examples/jobs.jsonl"
set +e
"$BIN/yizhan-producer" submit examples/jobs.jsonl >"$DEMO/ids.txt" 2>"$DEMO/rejected.txt"
code=$?
set -e
echo "    exit code $code; $(wc -l <"$DEMO/ids.txt") accepted, rejected lines:"
sed 's/^/    /' "$DEMO/rejected.txt"

echo "==> waiting for the worker to settle 8 jobs"
settled() { curl -fs "http://$YIZHAN_METRICS_ADDR/metrics" | awk '/^yizhan_jobs_total/ && !/retried/ {s+=$NF} END {print s+0}'; }
for _ in $(seq 1 120); do [ "$(settled)" -ge 8 ] && break; sleep 0.25; done

echo "==> what the providers received"
curl -fs "http://$SANDBOX_ADDR/_sandbox/sms" | python3 -c '
import json,sys
for s in json.load(sys.stdin): print("    SMS   %-15s %s" % (s["phone"], s["content"]))' 2>/dev/null || curl -fs "http://$SANDBOX_ADDR/_sandbox/sms"
curl -fs "http://$SANDBOX_ADDR/_sandbox/robot" | python3 -c '
import json,sys
for m in json.load(sys.stdin): print("    ROBOT %-8s %s" % (m["body"]["msgtype"], json.dumps(m["body"][m["body"]["msgtype"]], ensure_ascii=False)[:90]))' 2>/dev/null || curl -fs "http://$SANDBOX_ADDR/_sandbox/robot"

echo "==> job outcomes (yizhan_jobs_total)"
curl -fs "http://$YIZHAN_METRICS_ADDR/metrics" | grep '^yizhan_jobs_total' | sed 's/^/    /'
echo "==> retried and dead-lettered, from the worker's log"
grep -E "retrying|dead-lettering" "$DEMO/worker.log" | sed -E 's/\x1b\[[0-9;]*m//g; s/^/    /' || true
echo "==> stopping the worker (SIGTERM drains in-flight jobs)"
