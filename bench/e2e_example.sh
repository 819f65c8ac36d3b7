#!/usr/bin/env bash
# The README's first command from a clean clone, timed, with the scorecard summary.
#   bash bench/e2e_example.sh            # uses a fresh clone in a temp folder and a fresh venv
# Prints wall time per phase and the key scorecard numbers for bench/RESULTS.md.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
git clone -q "$repo" "$work/shoptalk"
cd "$work/shoptalk"
start=$(date +%s)
bash scripts/setup.sh
setup_done=$(date +%s)
.venv/bin/shoptalk build examples/kestrel
end=$(date +%s)
echo "setup: $((setup_done - start)) s, build: $((end - setup_done)) s, total: $((end - start)) s"
.venv/bin/python - <<'PY'
import json, pathlib
card = json.loads(next(pathlib.Path("examples/kestrel/.shoptalk/evals").glob("*/scorecard.json")).read_text())
for name, suite in card["suites"].items():
    for metric in suite["base"]:
        print(f"{name:16} n={suite['n']:3} {metric:18} base {suite['base'][metric]:.3f}  tuned {suite['tuned'][metric]:.3f}")
print("timing", card.get("timing"))
PY
echo "clone kept at $work/shoptalk"
