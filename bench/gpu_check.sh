#!/usr/bin/env bash
# The one prepared script a session lent a GPU runs (budget: under 8 minutes): the GPU tests,
# unfused vs fused 256-job sweep at the default size on the GPU, and one job's latency there.
# Every benchmark appends its table to bench/RESULTS.md. Usage: bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
status=0
"$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA"; print(torch.cuda.get_device_name(0))' || exit 3
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
echo "== GPU tests"
timeout 150 "$PY" -m pytest tests/worker/test_fused.py tests/worker/test_stages.py -q -p no:cacheprovider -k "gpu or cuda" -rs || status=1
timeout 120 "$PY" -m pytest tests/e2e -q -p no:cacheprovider -k "gpu or cuda" -rs || status=1
echo "== fused vs unfused, 256 default-size jobs on the GPU"
timeout 240 "$PY" -m bench.bench_sweep --skip-throughput --device cuda --fused-dims 64,1000,100,10 || status=1
echo "== one job's latency on the GPU"
timeout 70 "$PY" -m bench.bench_latency --device cuda --repeats 10 || status=1
exit $status
