#!/usr/bin/env bash
# Render the HTML reports people read and screenshot them for a manual look.
#
#   bash scripts/render_reports.sh [OUT_DIR]        (default: results/report-check)
#
# Writes, under OUT_DIR: the demo run's report (mtia-cluster demo), the rollout reports of the
# rollback example (gates, rollback, replay table) and of the 16-region example (Gantt labels,
# small multiples), and a PNG screenshot of each page taken with headless Chromium
# (`apt-get install chromium` if it is missing). Open the PNGs and look: per-service panels
# (R&R latency; LLM TTFT and TPOT) with SLO lines and the host failure marked; heat-map rows
# named region/rack/chip; Gantt labels not clipped; gates and rollbacks marked.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/report-check}
MTIA=${MTIA:-.venv/bin/mtia-cluster}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # absolute: chromium opens file:// URLs

# --overwrite: a rerun replaces what the previous run of this script wrote (nothing else)
"$MTIA" demo -o "$OUT/demo" --overwrite  # writes $OUT/demo-report.html
"$MTIA" rollout configs/rollouts/model-regression-rollback.yaml -o "$OUT/rollback" --overwrite \
  > /dev/null
"$MTIA" analyze "$OUT/rollback" --plot "$OUT/rollback.html" --overwrite > /dev/null
"$MTIA" rollout configs/rollouts/mtia2i-16-regions.yaml -o "$OUT/regions16" --fast --overwrite \
  > /dev/null
"$MTIA" analyze "$OUT/regions16" --plot "$OUT/regions16.html" --overwrite > /dev/null

if [ -z "$CHROMIUM" ]; then
  echo "no chromium found: open $OUT/*.html in a browser instead" >&2
  exit 0
fi
for page in demo-report rollback regions16; do
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$OUT/$page.png" --window-size=1400,4200 "file://$OUT/$page.html" \
    2> /dev/null
  echo "screenshot $OUT/$page.png"
done
