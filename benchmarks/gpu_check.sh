#!/usr/bin/env bash
# The one command to run on a GPU machine (CUDA, no network), from any folder:
#
#   bash benchmarks/gpu_check.sh [key=value ...]
#
# It installs nothing from the network: the wheels that benchmarks/prepare_gpu_assets.sh put into .whl/ (if
# any) go into a fresh /tmp/site ($GPU_CHECK_SITE), ahead of the machine's own packages; the real checkpoint and
# GLUE RTE are read from .gpu_assets/ (without them the real run uses the tiny model on the builtin RTE). Then it
# tries every module the check imports (src/tunebench/bench/gpu_stack.py, which prints the versions it runs
# with): one missing, from the wheels and from the machine alike, ends it there with one line naming it, exit 2.
# Then `tunebench bench --gpu-check "$OUT"` (docs/bench.md, "GPU check": under 5 minutes on one H100/H200),
# with the console tee'd into $OUT/console.log. OUT is the output folder (default results/gpu_check): the one
# folder to copy back from the GPU machine. The check keeps its scratch (runs, checkpoints) outside $OUT, in a
# temporary folder it removes, and copies the report's report.html and summary.md in: $OUT then holds 5 small
# files (gpu_check.json, gpu_check.log, console.log, report.html, summary.md).
# CUBLAS_WORKSPACE_CONFIG is exported before Python starts (deterministic cuBLAS: training.deterministic=true),
# and the Hugging Face libraries are told they are offline.
# Exit status: the check's (0: every part that ran passed; 1: a part failed; 2: it could not start).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-results/gpu_check}
WHEELS=${GPU_CHECK_WHEELS:-.whl}
SITE=${GPU_CHECK_SITE:-/tmp/site}
mkdir -p "$OUT" && : > "$OUT/console.log" || exit 2
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PYTHONUNBUFFERED=1

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    if [ -e "$SITE" ] && [ ! -f "$SITE/.gpu_check_site" ]; then
        echo "gpu_check.sh: $SITE exists and was not made by gpu_check.sh: remove it or set GPU_CHECK_SITE" \
            | tee -a "$OUT/console.log" >&2
        exit 2
    fi
    rm -rf "$SITE"                     # only the wheels in $WHEELS: nothing of an earlier set stays
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
        "$WHEELS"/*.whl 2>&1 | tee -a "$OUT/console.log" >&2
    if [ "${PIPESTATUS[0]}" != 0 ]; then
        echo "gpu_check.sh: cannot start: the wheels in $WHEELS do not install here (pip's message above)" \
            | tee -a "$OUT/console.log" >&2
        exit 2
    fi
    touch "$SITE/.gpu_check_site"
    export PYTHONPATH=$SITE:src
else
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi

assets=()
[ -d .gpu_assets/stories260K ] && assets+=(--gpu-check-model .gpu_assets/stories260K)
[ -d .gpu_assets/glue/RTE ] && assets+=(--gpu-check-glue .gpu_assets/glue)

{
    echo "gpu_check.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), PYTHONPATH=$PYTHONPATH," \
         "CUBLAS_WORKSPACE_CONFIG=$CUBLAS_WORKSPACE_CONFIG"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 || true
    python3 src/tunebench/bench/gpu_stack.py imports
} 2>&1 | tee -a "$OUT/console.log"
rc=${PIPESTATUS[0]}
if [ "$rc" != 0 ]; then
    echo "gpu_check.sh: exit $rc (nothing was run); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
    exit "$rc"
fi

python3 -m tunebench bench --gpu-check "$OUT" "${assets[@]}" "$@" 2>&1 | tee -a "$OUT/console.log"
rc=${PIPESTATUS[0]}
echo "gpu_check.sh: exit $rc; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
