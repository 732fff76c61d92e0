#!/usr/bin/env bash
# One GPU session's measurements (benchmarks/gpu_suite.py) with a hard time limit; results in
# $OUT (default runs/gpu). Wheels in .whl/ (a package the GPU machine lacks, or has in another
# version than the tests use) are installed into /tmp/site first. Run from the repository root:
#     bash benchmarks/gpu_suite.sh [gpu_suite.py options]
# On the device tool: carry [".whl"] where .whl/ holds wheels.
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
timeout 540 python3 benchmarks/gpu_suite.py --out "$OUT" "$@"
