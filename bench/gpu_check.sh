#!/usr/bin/env bash
# The one prepared check a session lent a GPU machine runs (under 8 minutes in all): on the
# machine's own python3 (it keeps its CUDA torch), the wheels of .whl/ installed offline, then
# the GPU tests (-m gpu, the end-to-end GPU worker among them), fused vs unfused sweeps on cuda
# at the default size and at D_in = H = 32, and one job's latency on cuda. Each benchmark
# appends its table to bench/RESULTS.md; with $OUT set, logs and RESULTS.md are copied there.
#
#   here:  make gpu-wheels                     (needs PyPI; fills the git-ignored .whl/)
#   there: bash bench/gpu_check.sh             (carry .whl with the working tree)
#
# Exit: 0 all passed, 1 a step failed or ran out of time, 3 no CUDA (after the offline install
# and imports were checked), 4 the offline install or an import failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${GPU_CHECK_PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/trainq-site}
BUDGET=${GPU_CHECK_SECONDS:-450}
# GPU_CHECK_DEVICE=cpu rehearses the steps, deadline and cleanup on a machine without CUDA.
DEVICE=${GPU_CHECK_DEVICE:-cuda}
LOGS=${OUT:-$ROOT/var/gpu_check}
LOG=$LOGS/gpu_check.log
mkdir -p "$LOGS"
: >"$LOG"
# Every process this run starts inherits the mark, so the cleanup finds them all, even those
# that left our process groups (trainq up starts each component in a session of its own).
export TRAINQ_GPU_CHECK_RUN="$$-$RANDOM$RANDOM"
START=$SECONDS
STATUS=0
CURRENT=""
SUMMARY=()

say() { echo "$*" | tee -a "$LOG"; }

kill_marked() {
    local environ pid
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        [ "$pid" = "$$" ] && continue
        if tr '\0' '\n' 2>/dev/null <"$environ" | grep -qx "TRAINQ_GPU_CHECK_RUN=$TRAINQ_GPU_CHECK_RUN"; then
            kill -KILL "$pid" 2>/dev/null
        fi
    done
}

finish() {
    local code=${1:-$STATUS}
    trap - EXIT TERM INT
    if [ -n "$CURRENT" ]; then  # a step still running: TERM its group, give it time to clean up
        kill -TERM -- "-$CURRENT" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$CURRENT" 2>/dev/null || break; sleep 1; done
    fi
    kill_marked
    [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null
    say "== summary after $((SECONDS - START)) s (exit $code)"
    for line in "${SUMMARY[@]}"; do say "  $line"; done
    grep -h -E "speed-up|median overhead" "$LOGS"/step-*.log 2>/dev/null | tee -a "$LOG"
    [ -f bench/RESULTS.md ] && [ -n "${OUT:-}" ] && cp bench/RESULTS.md "$LOGS/RESULTS.md"
    cat "$LOGS"/step-*.log >>"$LOGS/steps.log" 2>/dev/null && rm -f "$LOGS"/step-*.log
    exit "$code"
}
trap 'finish' EXIT
trap 'say "== stopped by a signal"; finish 1' TERM INT

# step NAME SECONDS COMMAND...: run it in its own process group, within what is left of BUDGET.
step() {
    local name=$1 limit=$2 left rc began
    shift 2
    left=$((BUDGET - (SECONDS - START)))
    if ((left < 20)); then
        SUMMARY+=("$name: skipped, the deadline is near")
        STATUS=1
        return
    fi
    ((limit > left)) && limit=$left
    say "== $name (at most $limit s)"
    began=$SECONDS
    setsid timeout -k 20 "$limit" "$@" >"$LOGS/step-$name.log" 2>&1 &
    CURRENT=$!
    wait "$CURRENT"
    rc=$?
    CURRENT=""
    kill_marked  # what a killed step left behind
    tail -n 25 "$LOGS/step-$name.log" | tee -a "$LOG"
    SUMMARY+=("$name: exit $rc after $((SECONDS - began)) s")
    ((rc == 0)) || STATUS=1
}

say "== offline install of .whl into $SITE ($("$PY" --version 2>&1))"
if ! ls .whl/*.whl >/dev/null 2>&1 || [ ! -f .whl/requirements.txt ]; then
    say "no wheels in .whl/: run 'make gpu-wheels' where PyPI is reachable, then carry .whl"
    finish 4
fi
# Resolved from .whl alone (it holds wheels for several Pythons: pip takes this one's).
if ! "$PY" -m pip --isolated install -q --no-index --find-links .whl --only-binary=:all: \
    --no-compile --upgrade --target "$SITE" -r .whl/requirements.txt >>"$LOG" 2>&1; then
    tail -n 20 "$LOG"
    finish 4
fi
# The project itself from this tree, the wheels after it, the machine's own packages last.
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# pytest only with the plugins the suite uses: the machine's others (xdist, benchmark...)
# could turn its warnings into errors under the suite's filterwarnings = error.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
IMPORTS="celery, kombu, redis, sqlalchemy, alembic, flask, pydantic, psycopg, gunicorn, yaml"
IMPORTS="$IMPORTS, click, requests, pytest, pytest_timeout, hypothesis, jsonschema"
CHECK="import $IMPORTS; from service.ops.redis_server import find_redis_server as f; print(f())"
if ! found=$("$PY" -c "$CHECK" 2>&1); then
    say "$found"
    finish 4
fi
say "imports ok; redis-server: $found"
if [ "$DEVICE" = cpu ]; then
    say "rehearsal on the CPU: the GPU tests skip, the benchmarks run on cpu"
elif ! "$PY" -c 'import sys, torch; print("torch", torch.__version__, torch.version.cuda)
sys.exit(0 if torch.cuda.is_available() else 1)' 2>&1 | tee -a "$LOG" && [ "$DEVICE" = cuda ]; then
    say "no CUDA here: the offline install and imports work; nothing was measured"
    finish 3
fi
"$PY" -c 'import service.api, service.ops.supervisor, worker.tasks' || finish 4
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv 2>&1 | tee -a "$LOG"
# GPU memory and utilisation through the benchmarks: does the GPU idle while a chunk flushes?
env -u TRAINQ_GPU_CHECK_RUN nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \
    --format=csv,nounits -l 1 >"$LOGS/nvidia-smi.csv" 2>/dev/null &
SAMPLER=$!

PYTEST=("$PY" -m pytest -p pytest_timeout -p _hypothesis_pytestplugin -p no:cacheprovider -q -rs)
# -m gpu: every CUDA test and the end-to-end GPU worker; no PostgreSQL on these machines.
step gpu-tests 150 "${PYTEST[@]}" -m "gpu and not postgres" tests/worker tests/e2e/test_gpu_worker.py
SWEEP=("$PY" -m bench.bench_sweep --skip-throughput --device "$DEVICE")
step sweep-default-size 150 "${SWEEP[@]}" --fused-dims 64,1000,100,10
step sweep-32 90 "${SWEEP[@]}" --fused-dims 64,32,32,10
step latency 70 "$PY" -m bench.bench_latency --device "$DEVICE" --repeats 10
finish "$STATUS"
