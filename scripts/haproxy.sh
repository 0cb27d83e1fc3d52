#!/usr/bin/env bash
# HAProxy for the replica tests (tests/test_mcp_replicas.py): Debian's haproxy package, installed
# if missing (as root; elsewhere it says how). Idempotent; the tests start their own haproxy
# processes with scripts/haproxy-test.cfg, nothing runs as a service.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/haproxy.sh: HAProxy is not installed; install Debian's haproxy package (or run this as root)" >&2
    exit 1
fi
echo "installing Debian's haproxy package for the replica tests..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq haproxy >/dev/null
