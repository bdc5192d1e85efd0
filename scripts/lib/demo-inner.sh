#!/usr/bin/env bash
# The body of scripts/demo.sh; runs where /dev/kvm works (natively or inside scripts/kvm-run).
# All network traffic stays on this machine: the "API" is a local server on 127.0.0.1 that the
# proxy reaches through a resolver override; the blocked host is refused before any lookup.
set -euo pipefail
BUILD_DIR=${1:-build}
AIRLOCK=$BUILD_DIR/bin/airlock
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. A sandbox: boot a microVM, run commands in it"
"$AIRLOCK" run -- /bin/sh -c 'echo "kernel: $(uname -r), cpus: $(nproc)"; ls -lh /'

say "2. Egress policy and secret substitution"
# A local "API" (HTTP echo server on 127.0.0.1) that logs what it really received.
/usr/bin/python3 "$ROOT/tests/proxy/upstream_server.py" --port 0 --log "$work/upstream.jsonl" \
  >"$work/upstream.out" &
for _ in $(seq 100); do grep -q '^port ' "$work/upstream.out" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/^port /{print $2}' "$work/upstream.out")
echo "local API server: http://api.example.test:$port -> 127.0.0.1:$port (resolver override)"

# The real key lives only on the host; the guest gets a placeholder in $API_KEY.
export DEMO_REAL_API_KEY="sk-demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
set +e
"$AIRLOCK" run --allow "api.example.test" --resolve "api.example.test=127.0.0.1" \
  --secret "API_KEY=DEMO_REAL_API_KEY@api.example.test" -- /bin/sh -c "
    echo \"guest: \\\$API_KEY = \$API_KEY\"
    echo 'guest: GET http://api.example.test:$port/echo with Authorization: Bearer \$API_KEY'
    wget -q -O - --header \"Authorization: Bearer \$API_KEY\" http://api.example.test:$port/echo \
      | grep -io '\[\"authorization\", *\"[^\"]*\"\]' | sed 's/^/guest: the API echoed back (the proxy redacts the real value): /'
    echo 'guest: GET http://example.org/ (not in allow_net)'
    wget -q -O /dev/null http://example.org/ 2>&1 | sed 's/^/guest: /'
    echo 'guest: the same key sent to example.org'
    wget -q -O /dev/null --header \"Authorization: Bearer \$API_KEY\" http://example.org/ 2>&1 | sed 's/^/guest: /'
    true"
set -e
if grep -q "Bearer $DEMO_REAL_API_KEY" "$work/upstream.jsonl"; then
  echo "host: the API server received the REAL key (it is not shown here), the guest only the placeholder"
else
  echo "host: the API server did not receive the real key"; exit 1
fi
echo
echo "demo done"
