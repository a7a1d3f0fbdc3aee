#!/usr/bin/env bash
# The demo two ways on this machine, compared: `python -m mtia_cluster demo` (embedded Ray;
# it generates its trace beside its results) and ops/README.md's one-machine walk-through
# (`ray start --head --node-ip-address 127.0.0.1` + `ray job submit --working-dir . --
# python -m mtia_cluster replay configs/scenarios/demo.yaml --trace <that trace> ...`).
# Safe beside other people's Ray: an empty HOME, its own Ray temp dir and ports, and the head
# is stopped by its own processes (never `ray stop`). Needs ray[default] (extra `cluster`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BIN=$(dirname "$PY")
export PYTHONPATH=$PWD PATH="$BIN:$PATH"
unset RAY_ADDRESS RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH
W=$(mktemp -d); mkdir "$W/home"; export HOME=$W/home
echo "$(uptime)"
/usr/bin/time -f "embedded demo: %e s" "$PY" -m mtia_cluster demo -o "$W/embedded" >/dev/null 2>"$W/embedded.err"
tail -1 "$W/embedded.err"
T=$(mktemp -d /tmp/mtia-ray-XXXXXXXX)
read -r G D A AG E MX < <("$PY" -c "
import socket
ss = [socket.socket() for _ in range(6)]
for s in ss: s.bind(('127.0.0.1', 0))
print(*[s.getsockname()[1] for s in ss])")
stop_head() { "$PY" -c "from mtia_cluster.distributed import fleet; fleet.stop_local_head({'temp_dir': '$T'})"; }
trap stop_head EXIT
export RAY_AUTH_MODE=token RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
/usr/bin/time -f "ray start: %e s" "$BIN/ray" start --head --node-ip-address 127.0.0.1 --port "$G" \
  --temp-dir "$T" --dashboard-host 127.0.0.1 --dashboard-port "$D" \
  --dashboard-agent-listen-port "$A" --dashboard-agent-grpc-port "$AG" \
  --runtime-env-agent-port "$E" --metrics-export-port "$MX" --disable-usage-stats >"$W/start.txt" 2>&1
tail -1 "$W/start.txt"
for _ in $(seq 20); do  # the Jobs API answers before its agent has registered
  /usr/bin/time -f "ray job submit: %e s" "$BIN/ray" job submit --address "http://127.0.0.1:$D" \
    --working-dir . -- python -m mtia_cluster replay configs/scenarios/demo.yaml \
    --trace "$W/embedded-trace.parquet" -o "$W/job" >"$W/job.txt" 2>&1 || true
  grep -q "No available agent" "$W/job.txt" || break
  sleep 3
done
tail -1 "$W/job.txt"
"$PY" -c "
from pathlib import Path
from tests.distributed.conftest import assert_same_run
assert_same_run(Path('$W/embedded'), Path('$W/job'))
print('same results: requests identical, summary figures equal (floats to 1e-9)')"
echo "runs in $W"
