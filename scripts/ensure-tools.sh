#!/bin/sh
# Makes sure the external tools the tests drive are installed: skopeo (the client the integration
# tests and benchmarks push and pull with), podman and containerd's ctr (pulls with TLS
# verification and sign-in), umoci (unpacks the layouts the test image builders write), docker-registry (CNCF Distribution, the reference the selftest and benchmarks compare
# with), Debian's chromium (the browser the web UI tests drive through playwright-core, which
# downloads no browser of its own), tmux (the terminal the CLI's progress bars are drawn in) and
# openssl (keys for the encryption tests). Fast when all are there already: no apt call then.
set -eu

missing=""
command -v skopeo >/dev/null 2>&1 || missing="$missing skopeo"
command -v podman >/dev/null 2>&1 || missing="$missing podman"
command -v ctr >/dev/null 2>&1 || missing="$missing containerd"
command -v umoci >/dev/null 2>&1 || missing="$missing umoci"
command -v docker-registry >/dev/null 2>&1 || missing="$missing docker-registry"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"

if [ -z "$missing" ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-tools: missing:$missing; install with: sudo apt-get install -y$missing" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: missing:$missing, and apt-get is not available; install them with your package manager" >&2
  exit 1
fi

echo "ensure-tools: installing$missing with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086 # one word per package
apt-get install -y -qq $missing >/dev/null
for tool in skopeo podman ctr containerd umoci docker-registry tmux openssl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "ensure-tools: $tool still not on PATH after install" >&2; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "ensure-tools: /usr/bin/chromium still missing after install" >&2; exit 1; }
