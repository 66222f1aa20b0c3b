#!/usr/bin/env bash
# `predict` on one CIF against `python -c "import torch"`, alternating, three rounds (wall s).
# Usage: bash benchmarks/predict_startup.sh MODEL [BASE_CHECKOUT]
#   BASE_CHECKOUT: another checkout (e.g. `git archive <commit> | tar -x -C DIR`) timed alongside.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
CIF="$ROOT/assets/examples/SrTiO3_perovskite.cif"
run() { (cd "$1" && /usr/bin/time -f %e "$PY" "${@:2}" >/dev/null) 2>&1 | tail -1; }
for _ in 1 2 3; do
  line="import_torch=$(run "$ROOT" -c 'import torch')"
  if [ -n "${2:-}" ]; then line+=" predict_base=$(run "$2" -m engine predict --model "$1" --input "$CIF")"; fi
  line+=" predict=$(run "$ROOT" -m engine predict --model "$1" --input "$CIF")"
  echo "$line load=$(cut -d' ' -f1 /proc/loadavg)"
done
