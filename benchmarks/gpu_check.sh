#!/usr/bin/env bash
# The one command to run on a lent GPU machine (CUDA, no network), from any folder:
#
#   bash benchmarks/gpu_check.sh [key=value ...]
#
# It installs nothing from the network: the wheels that benchmarks/prepare_gpu_assets.sh put into .whl/ (if
# any) go into /tmp/site, ahead of the machine's own packages; the real checkpoint and GLUE RTE are read from
# .gpu_assets/ (without them the real run uses the tiny model on the builtin RTE). It prints the versions it
# runs with, then runs `tunebench bench --gpu-check "$OUT"` (docs/bench.md, "GPU check": under 5 minutes on
# one H100/H200) with the console tee'd into $OUT/console.log. OUT is the device tool's output folder, else
# results/gpu_check. Afterwards the check's work folder (runs, checkpoints) is moved out of $OUT, to
# /tmp/gpu_check_work, and the report's report.html and summary.md are copied in: $OUT then holds 5 files
# (gpu_check.json, gpu_check.log, console.log, report.html, summary.md), within the 8 the device tool returns.
# Exit status: the check's (0: every part that ran passed; 1: a part failed; 2: it could not start).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT=${OUT:-results/gpu_check}
mkdir -p "$OUT" || exit 2

if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site:src
else
    export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
fi

assets=()
[ -d .gpu_assets/stories260K ] && assets+=(--gpu-check-model .gpu_assets/stories260K)
[ -d .gpu_assets/glue/RTE ] && assets+=(--gpu-check-glue .gpu_assets/glue)

{
    echo "gpu_check.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), PYTHONPATH=$PYTHONPATH"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1 || true
    python3 - <<'EOF'
import importlib.metadata as md
import platform

names = ("torch", "triton", "transformers", "peft", "accelerate", "datasets", "pydantic", "pandas", "pyarrow",
         "numpy", "huggingface_hub", "tokenizers", "safetensors", "regex", "scipy", "scikit-learn", "matplotlib")
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        found.append(f"{name} MISSING")
print(f"python {platform.python_version()}: " + ", ".join(found))
EOF
} 2>&1 | tee "$OUT/console.log"

PYTHONUNBUFFERED=1 python3 -m tunebench bench --gpu-check "$OUT" "${assets[@]}" "$@" 2>&1 | tee -a "$OUT/console.log"
rc=${PIPESTATUS[0]}

work="$OUT/gpu_check_work"
if [ -d "$work" ]; then
    report="$work/runs/gpu-check/report"
    for f in report.html summary.md; do
        [ -f "$report/$f" ] && cp "$report/$f" "$OUT/$f"
    done
    rm -rf /tmp/gpu_check_work
    mv "$work" /tmp/gpu_check_work && echo "gpu_check.sh: work folder moved to /tmp/gpu_check_work"
fi
echo "gpu_check.sh: exit $rc; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit "$rc"
