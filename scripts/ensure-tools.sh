#!/bin/sh
# Makes sure the external tools the tests drive are installed: skopeo (the client the integration
# tests and benchmarks push and pull with). Fast when it is already on PATH: no apt call then.
set -eu

if command -v skopeo >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-tools: skopeo is missing; install it with: sudo apt-get install -y skopeo" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-tools: skopeo is missing and apt-get is not available; install skopeo with your package manager" >&2
  exit 1
fi

echo "ensure-tools: installing skopeo with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq skopeo >/dev/null
command -v skopeo >/dev/null 2>&1 || { echo "ensure-tools: skopeo still not on PATH after install" >&2; exit 1; }
