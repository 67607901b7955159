#!/usr/bin/env bash
# Makes sure the tools that check deploy/ are present (tests/tests/deploy.rs runs them):
#   promtool            from the Debian package `prometheus` (its service is not left running);
#   yamllint, kubernetes-validate (and jsonschema, PyYAML for deploy/check.py)
#                       from PyPI, into a venv at $YIZHAN_DEPLOY_VENV (default ~/.cache/yizhan/deploy-venv).
# Idempotent: installs only what is missing. Prints nothing but progress on stderr.
set -euo pipefail

VENV="${YIZHAN_DEPLOY_VENV:-$HOME/.cache/yizhan/deploy-venv}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v promtool >/dev/null 2>&1; then
  echo "deploy-tools: installing promtool (Debian package prometheus)" >&2
  # Keep the package's postinst from starting the system Prometheus (it would take port 9090).
  policy=/usr/sbin/policy-rc.d
  added_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    added_policy=1
  fi
  apt_install prometheus || { [ -n "$added_policy" ] && $SUDO rm -f "$policy"; exit 1; }
  if [ -n "$added_policy" ]; then $SUDO rm -f "$policy"; fi
  # Where an init system started it anyway, stop it and keep it off.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

tools_ok() {
  [ -x "$VENV/bin/yamllint" ] && [ -x "$VENV/bin/kubernetes-validate" ] \
    && "$VENV/bin/python" -c 'import jsonschema, yaml' >/dev/null 2>&1
}
if ! tools_ok; then
  echo "deploy-tools: installing yamllint and kubernetes-validate into $VENV" >&2
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  mkdir -p "$(dirname "$VENV")"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    yamllint kubernetes-validate jsonschema PyYAML >/dev/null
fi

tools_ok || { echo "deploy-tools: $VENV is incomplete" >&2; exit 1; }
command -v promtool >/dev/null 2>&1 || { echo "deploy-tools: promtool missing" >&2; exit 1; }
echo "deploy-tools: promtool, yamllint, kubernetes-validate are present" >&2
