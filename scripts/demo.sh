#!/usr/bin/env bash
# The whole local stack in one command: RabbitMQ and Redis (started or installed if needed), the
# provider sandbox, a worker and the producer; submits examples/jobs.jsonl (SMS, robot messages,
# a duplicate, a throttled and a blacklisted number, two invalid lines), then through the HTTP API
# a campaign from a CSV, a scheduled job, quiet hours and a recipient cap, and
# prints what happened.
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

# Marketing: quiet hours that hold now (for two minutes) and at most one SMS a minute per number.
[connectors.tencent_sms.marketing]
secret_id = "AKIDsandbox0000000000000000000000000"
secret_key = "\${DEMO_SMS_SECRET_KEY}"
sdk_app_id = "1400000000"
endpoint = "http://$SANDBOX_ADDR"
quiet_hours = "$(date -u +%H:%M)-$(date -u -d '+2 min' +%H:%M)"
timezone = "UTC"
recipient_caps = "1/min"
TOML

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for q in jobs.high jobs.normal jobs.bulk dead delay.1s delay.2s callbacks; do
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
API_ADDR=${YIZHAN_DEMO_API_ADDR:-127.0.0.1:18081}
export YIZHAN_HTTP_ADDR="$API_ADDR" YIZHAN_API_TOKENS=demo-token YIZHAN_API_URL="http://$API_ADDR" YIZHAN_API_TOKEN=demo-token
echo "==> starting the HTTP API on $API_ADDR (logs: $DEMO/api.log)"
"$BIN/yizhan-producer" serve >"$DEMO/api.log" 2>&1 & pids+=($!)
for _ in $(seq 1 120); do curl -fs "http://$API_ADDR/readyz" >/dev/null 2>&1 && break; sleep 0.25; done
api() { curl -s -H "Authorization: Bearer demo-token" -H 'content-type: application/json' "$@"; }
sms_to() { curl -fs "http://$SANDBOX_ADDR/_sandbox/sms" | python3 -c "import json,sys; print(sum(1 for s in json.load(sys.stdin) if s['phone']=='$1'))"; }

echo "==> a campaign: one template, 5 recipients from a CSV with their own parameters"
cat > "$DEMO/campaign.json" <<JSON
{"name": "spring sale", "idempotency_key": "spring-$$", "connector": "tencent_sms", "config": "default",
 "action": "send_sms", "params": {"sign_name": "Yizhan", "template_id": "1002", "template_params": ["customer", "-"]}}
JSON
printf 'to,template_params[],template_params[]\n' >"$DEMO/recipients.csv"
for i in 1 2 3 4 5; do printf '+861390000000%s,Customer %s,A-100%s\n' "$i" "$i" "$i" >>"$DEMO/recipients.csv"; done
campaign=$("$BIN/yizhan-producer" campaign submit "$DEMO/campaign.json" --recipients "$DEMO/recipients.csv" 2>/dev/null)
echo "    campaign $campaign"
for _ in $(seq 1 120); do
  status=$("$BIN/yizhan-producer" campaign status "$campaign" 2>/dev/null || true)
  echo "$status" | grep -q '"status": *"done"' && break; sleep 0.25
done
echo "    $(echo "$status" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c["status"], "total", c["total"], {k: v for k, v in c["counts"].items() if v})')"
curl -fs "http://$SANDBOX_ADDR/_sandbox/sms" | python3 -c '
import json,sys
for s in json.load(sys.stdin):
    if s["phone"].startswith("+86139000000"): print("    SMS   %-15s %s" % (s["phone"], s["content"]))'
echo "    submitted again (same idempotency_key): $("$BIN/yizhan-producer" campaign submit "$DEMO/campaign.json" --recipients "$DEMO/recipients.csv" 2>/dev/null) (nothing sent twice)"

echo "==> a job scheduled 3 s ahead (send_at)"
at=$(date -u -d '+3 sec' +%Y-%m-%dT%H:%M:%S+00:00)
id=$(api -X POST "http://$API_ADDR/v1/jobs" -d "{\"connector\":\"tencent_sms\",\"config\":\"default\",\"action\":\"send_sms\",\"send_at\":\"$at\",\"params\":{\"phone_numbers\":[\"+8613900000010\"],\"sign_name\":\"Yizhan\",\"template_id\":\"1001\",\"template_params\":[\"later\"]}}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])')
sleep 0.5
echo "    at once:    $(api "http://$API_ADDR/v1/jobs/$id" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"])'), SMS to +8613900000010: $(sms_to +8613900000010)"
for _ in $(seq 1 40); do [ "$(sms_to +8613900000010)" -ge 1 ] && break; sleep 0.25; done
echo "    after $at: $(api "http://$API_ADDR/v1/jobs/$id" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"])'), SMS to +8613900000010: $(sms_to +8613900000010)"

echo "==> quiet hours on config marketing ($(grep quiet_hours "$YIZHAN_CONFIG" | cut -d'"' -f2) UTC): bulk waits, high goes"
job() { echo "{\"connector\":\"tencent_sms\",\"config\":\"marketing\",\"action\":\"send_sms\",\"priority\":\"$1\",\"params\":{\"phone_numbers\":[\"$2\"],\"sign_name\":\"Yizhan\",\"template_id\":\"1001\",\"template_params\":[\"$3\"]}}"; }
bulk=$(api -X POST "http://$API_ADDR/v1/jobs" -d "$(job bulk +8613900000020 promo)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])')
high=$(api -X POST "http://$API_ADDR/v1/jobs" -d "$(job high +8613900000021 123456)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])')
for _ in $(seq 1 40); do [ "$(sms_to +8613900000021)" -ge 1 ] && break; sleep 0.25; done
echo "    bulk: $(api "http://$API_ADDR/v1/jobs/$bulk" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], "until", j.get("next_attempt_at"))'); high: $(api "http://$API_ADDR/v1/jobs/$high" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
echo "==> recipient cap 1/min on config marketing: a second code to the same number is capped"
second=$(api -X POST "http://$API_ADDR/v1/jobs" -d "$(job high +8613900000021 654321)" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ids"][0])')
for _ in $(seq 1 40); do s=$(api "http://$API_ADDR/v1/jobs/$second" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'); [ "$s" = capped ] && break; sleep 0.25; done
echo "    second code: $s; SMS to +8613900000021: $(sms_to +8613900000021)"

echo "==> stopping the worker (SIGTERM drains in-flight jobs)"
