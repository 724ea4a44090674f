#!/usr/bin/env bash
# Median latency of a trivial Python and JavaScript main() (and ones that use pandas and lodash) over HTTP, at concurrency 1 and 8,
# measured by oha (installed with cargo when missing) against a release build of sandlot.
#   bench/latency.sh [REQUESTS]      (default 2000 per case)
set -euo pipefail
cd "$(dirname "$0")/.."
requests="${1:-2000}"
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --quiet
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
./target/release/sandlot serve --listen "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log" "$log.json"' EXIT
for _ in $(seq 1 300); do grep -q "ready on" "$log" && break; sleep 0.1; done
grep -q "ready on" "$log" || { cat "$log"; exit 1; }

python_body='{"language":"python","code":"def main(a, b):\n    return {\"sum\": a + b}","inputs":{"a":1,"b":2}}'
js_body='{"language":"javascript","code":"function main({a, b}) { return {sum: a + b} }","inputs":{"a":1,"b":2}}'
pandas_body='{"language":"python","code":"import pandas as pd\ndef main(a, b):\n    return {\"sum\": int(pd.Series([a, b]).sum())}","inputs":{"a":1,"b":2}}'
lodash_body='{"language":"javascript","code":"const _ = require(\"lodash\");\nfunction main({a, b}) { return {sum: _.add(a, b)} }","inputs":{"a":1,"b":2}}'

printf '%-12s %5s %10s %10s %10s %10s\n' case conc "p50 ms" "p90 ms" "p99 ms" "req/s"
# The python-data zygote comes up once its packages are installed (the first run installs them).
for _ in $(seq 1 1200); do
  curl -s "http://127.0.0.1:$port/readyz" | grep -q '"kind":"python-data"[^}]*"ready":true' && break
  sleep 0.5
done

for lang in python py+pandas javascript js+lodash; do
  case $lang in
    python) body=$python_body ;;
    py+pandas) body=$pandas_body ;;
    javascript) body=$js_body ;;
    js+lodash) body=$lodash_body ;;
  esac
  for conc in 1 8; do
    oha --no-tui --output-format json -n "$requests" -c "$conc" -m POST \
      -H 'content-type: application/json' -d "$body" "http://127.0.0.1:$port/v1/run" >"$log.json"
    python3 -c '
import json, sys
d = json.load(open(sys.argv[3]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
assert list(codes) == ["200"], f"non-200 answers: {codes}"
row = [sys.argv[1], sys.argv[2]] + [p[k] * 1000 for k in ("p50", "p90", "p99")]
print("%-12s %5s %10.2f %10.2f %10.2f %10.0f" % tuple(row + [d["summary"]["requestsPerSec"]]))
' "$lang" "$conc" "$log.json"
  done
done
