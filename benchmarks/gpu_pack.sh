#!/usr/bin/env bash
# Prepare .gpu-carry/ for benchmarks/gpu_check.sh on the GPU machine, then print the one device call.
#   benchmarks/gpu_pack.sh [path/to/cifar10_test.npz]     (default ../shared/data/cifar10_test.npz)
# .gpu-carry/site  torch-pruning and pyautoattack, unpacked pure-Python wheels (pyautoattack's 44 MB of
#                  example weights left out: its wheel alone would take most of the 64 MiB that travels)
# .gpu-carry/cifar10_slice.npz  CIFAR-10 test images 0-4999 (fine-tuning) and 9000-9999 (held out)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
src="${1:-../shared/data/cifar10_test.npz}"
carry=.gpu-carry
rm -rf "$carry/site"
mkdir -p "$carry/site" "$carry/wheels"
pins="torch-pruning==1.6.1 pyautoattack==0.2.0"
# wheels: from the package index when it is reachable, else from this checkout's virtual environment
if "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        --no-deps -d "$carry/wheels" $pins 2>/dev/null; then
    for whl in "$carry"/wheels/*.whl; do
        "$PY" - "$whl" "$carry/site" <<'PYEOF'
import sys, zipfile
whl, dst = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    z.extractall(dst, [n for n in z.namelist() if "/examples/" not in n])
PYEOF
    done
    echo "site: unpacked $(ls "$carry"/wheels/*.whl | xargs -n1 basename | tr '\n' ' ')"
else
    echo "pip download failed (offline?): copying the installed packages from $PY's environment" >&2
    "$PY" - "$carry/site" <<'PYEOF'
import importlib, pathlib, shutil, sys
dst = pathlib.Path(sys.argv[1])
for name in ("torch_pruning", "pyautoattack"):
    src = pathlib.Path(importlib.import_module(name).__file__).parent
    shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("examples", "__pycache__"))
    print(f"site: copied {name} from {src}")
PYEOF
fi
rm -rf "$carry/wheels"  # only the unpacked, trimmed packages travel
if [ -f "$src" ]; then
    "$PY" benchmarks/gpu_check.py --make-slice "$src" "$carry/cifar10_slice.npz"
else
    echo "warning: no CIFAR-10 test set at $src: the attack (AutoAttack) and prune parts will be skipped" >&2
fi
grep -qxF '/.gpu-carry/' .gitignore || echo "note: .gpu-carry/ is not in .gitignore: it would travel twice" >&2
git ls-files -co --exclude-standard -z | "$PY" -c '
import os, sys
repo = sum(os.path.getsize(p) for p in sys.stdin.read().split("\0") if p and os.path.isfile(p))
carry = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".gpu-carry") for f in fs)
mib = 1 << 20
print(f"working tree {repo / mib:.1f} MiB + carry {carry / mib:.1f} MiB = {(repo + carry) / mib:.1f} MiB (limit 64 MiB)")
sys.exit(0 if repo + carry < 64 * mib else "error: over the 64 MiB that can travel")'
cat <<'MSG'

The device call (one run; about 8 minutes on one H100, leave the rest of the 10 for start-up):
  run(command="bash benchmarks/gpu_check.sh \"$OUT\"",
      carry=[".gpu-carry"], timeout_s=560)
Then copy the files that come back (gpu_check.json / .md / .log / -tests.xml) into
benchmarks/results/gpu_check-<gpu>-<date>/ and commit them.
MSG
