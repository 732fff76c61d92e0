#!/usr/bin/env bash
# One H100 lease (research/demo_reading.md, section 7): generate data/synth200, then train
# the variants of research/demo_variants_device.txt side by side (12 processes under MPS, else the first
# 8; one CPU thread each) and copy their results into $OUT as they land. Run from the repository root:
#     bash research/device_sweep.sh            (OUT defaults to runs/device)
set -u
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
VARIANTS=${VARIANTS:-research/demo_variants_device.txt}
start=$(date +%s)
nvidia-smi -L 2>&1 | tee "$OUT/machine.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/machine.txt"
python3 -m capellm.cli data synth --out data/synth200 --images-per-category 200 2>&1 | tail -2
echo "generated after $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"

# MPS lets the processes' small kernels run side by side instead of taking turns on the GPU; if
# it does not come up, 8 variants run without it
parallel=8
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
mkdir -p /tmp/mps_pipe /tmp/mps_log
if nvidia-cuda-mps-control -d 2>>"$OUT/machine.txt" \
   && timeout 60 python3 -c "import torch; assert float(torch.ones(8, device='cuda').sum()) == 8" 2>>"$OUT/machine.txt"; then
    parallel=12
    echo "MPS on" | tee -a "$OUT/machine.txt"
else
    echo quit | nvidia-cuda-mps-control 2>/dev/null
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "MPS off" | tee -a "$OUT/machine.txt"
fi
grep -v '^#' "$VARIANTS" | grep . | head -n $parallel > /tmp/variants.txt

collect() {
    python3 - "$OUT/results.json" <<'PY'
import json, pathlib, sys
rows = [json.loads(p.read_text()) for p in sorted(pathlib.Path("runs/dev").glob("*/result.json"))]
hist = {p.parent.name: json.loads(p.read_text()) for p in sorted(pathlib.Path("runs/dev").glob("*/history.json"))}
pathlib.Path(sys.argv[1]).write_text(json.dumps({"results": rows, "history": hist}, indent=1))
PY
}
( while sleep 20; do collect; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader >> "$OUT/machine.txt" 2>/dev/null; done ) &
watcher=$!
# the sweep stops a variant at the first 1,500-step boundary past 330 s and scores it; the outer
# timeout keeps the lease's 10-minute limit
timeout $(( 560 - ($(date +%s) - start) )) python3 research/sweep.py /tmp/variants.txt \
    --data data/synth200 --out runs/dev --every 1500 --deadline 330 --parallel $parallel --threads 1 \
    --log "$OUT/sweep.log" > "$OUT/sweep.out" 2>&1
echo "sweep exit $? after $(( $(date +%s) - start )) s" | tee -a "$OUT/machine.txt"
kill $watcher
collect
grep -a "RESULT\|failed\|Error" "$OUT/sweep.log" "$OUT/sweep.out" | tail -20
