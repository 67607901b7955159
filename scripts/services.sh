#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672, guest/guest), Redis (127.0.0.1:6379) and PostgreSQL
# (127.0.0.1:5432, user postgres, trust) are up: starts them
# when installed but stopped, installs them from Debian packages when missing. Idempotent.
# Also installs (never starts) redis-sentinel, Dovecot, Postfix, Chromium and chromedriver: the sentinel and qq_mail tests
# run private instances of them on free ports (scripts/redis-sentinel.sh, tests/src/mail.rs); a
# system instance the packages may start is not used.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  for _ in $(seq 1 "$(( $3 * 4 ))"); do port_open "$2" && return 0; sleep 0.25; done
  echo "services: $1 did not come up on port $2" >&2; return 1
}

missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The sentinel tests (tests/tests/sentinel.rs) run private redis-sentinel processes through
# scripts/redis-sentinel.sh; the package's own service, if the system starts it, is not used.
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
# Mail servers for tests/tests/mail.rs (binaries under /usr/sbin and /usr/lib, not always on PATH).
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core)
[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3 ] || missing+=(dovecot-pop3d)
[ -x /usr/lib/dovecot/lmtp ] || missing+=(dovecot-lmtpd)
[ -x /usr/lib/postfix/sbin/master ] || missing+=(postfix)
# PostgreSQL for the postgres:// state store's tests (state/tests, tests/tests/postgres.rs).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
# Headless Chromium and its WebDriver for the console's browser tests (tests/tests/console.rs,
# through scripts/chromedriver.sh).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# pip, to install Tencent Cloud's official Python SDK below.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  echo "services: installing ${missing[*]} from Debian packages" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # Postfix asks how to configure the system instance: local delivery only, no questions.
  printf '%s\n' "postfix postfix/main_mailer_type select Local only" "postfix postfix/mailname string localhost" |
    $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! port_open 6379; then
  echo "services: starting redis" >&2
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir "$( [ -w /var/lib/redis ] && echo /var/lib/redis || echo /tmp )" \
    --logfile "$( [ -w /var/log/redis ] && echo /var/log/redis/yizhan.log || echo /tmp/yizhan-redis.log )"
fi

if ! port_open 5672; then
  echo "services: starting rabbitmq" >&2
  rabbitmq-server -detached >/dev/null 2>&1 || true
  rabbitmqctl -q await_startup --timeout 120 >/dev/null 2>&1 || true
fi
# The management API (port 15672) for the console's unacked counts (tests/tests/console.rs).
# Enabling an enabled plugin is a no-op; Debian's rabbitmq-server package ships it disabled.
rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 ||
  echo "services: could not enable rabbitmq_management (the console's unacked counts need it)" >&2

# PostgreSQL on 127.0.0.1:5432, trusting user postgres over local TCP, with a database `test`:
# the tests create (and drop) a database of their own on it (yizhan_state::ScratchDatabase).
pg_trusts() { psql -h 127.0.0.1 -U postgres -d postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; }
if ! port_open 5432; then
  echo "services: starting postgresql" >&2
  pg_version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
  [ -d "/etc/postgresql/$pg_version/main" ] || pg_createcluster "$pg_version" main >/dev/null
  pg_ctlcluster "$pg_version" main start
fi
wait_port postgresql 5432 60
if ! pg_trusts; then
  echo "services: letting user postgres in from 127.0.0.1 without a password (tests only)" >&2
  for hba in /etc/postgresql/*/*/pg_hba.conf; do
    grep -q '# yizhan tests' "$hba" || sed -i '1i host all postgres 127.0.0.1/32 trust # yizhan tests' "$hba"
  done
  for cluster in /etc/postgresql/*/*/; do
    pg_ctlcluster "$(basename "$(dirname "$cluster")")" "$(basename "$cluster")" reload || true
  done
  for _ in $(seq 1 40); do pg_trusts && break; sleep 0.25; done
fi
psql -h 127.0.0.1 -U postgres -d postgres -w -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
  psql -h 127.0.0.1 -U postgres -d postgres -w -qc 'CREATE DATABASE test'

# Tencent Cloud's official Python SDK, for sandbox/tests/tencent_official_sdk.rs (the sandbox must
# accept the provider's own client's requests).
if ! python3 -c 'import tencentcloud.sms.v20210111, tencentcloud.ses.v20201002' >/dev/null 2>&1; then
  echo "services: installing tencentcloud-sdk-python-sms and -ses from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check \
    tencentcloud-sdk-python-common tencentcloud-sdk-python-sms tencentcloud-sdk-python-ses >/dev/null 2>&1 ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      tencentcloud-sdk-python-common tencentcloud-sdk-python-sms tencentcloud-sdk-python-ses
fi

wait_port redis 6379 30
wait_port rabbitmq 5672 120
echo "services: rabbitmq, redis and postgresql are up; redis-sentinel, dovecot and postfix are installed" >&2
