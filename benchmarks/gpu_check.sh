#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/gpu_check.py): run from anywhere, results in $1 or $OUT.
#   benchmarks/gpu_check.sh [OUT_DIR] [more gpu_check.py options, e.g. --dry-run --force]
# Packages the GPU machine lacks (torch-pruning, pyautoattack) and the CIFAR-10 slice come from .gpu-carry/
# (made by benchmarks/gpu_pack.sh); nothing is installed and nothing is fetched.
set -u
cd "$(dirname "$0")/.." || exit 2
out="${1:-${OUT:-}}"
[ $# -gt 0 ] && shift
if [ -z "$out" ]; then
    echo "error: no results folder: give one (benchmarks/gpu_check.sh DIR) or set \$OUT" >&2
    exit 2
fi
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && ! command -v nvidia-smi >/dev/null && PY=.venv/bin/python
site="$PWD/.gpu-carry/site"
export PYTHONPATH="${site}:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
"$PY" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec "$PY" benchmarks/gpu_check.py --out "$out" "$@"
