#!/usr/bin/env bash
# Run on a machine that reaches PyPI, once before running the check on a GPU machine: prepares what
# benchmarks/gpu_check.sh needs there, where nothing can be downloaded.
#
#   .gpu_assets/stories260K   the real checkpoint          (from $SHARED/models/stories260K)
#   .gpu_assets/glue/RTE      the official RTE files       (from $SHARED/data/glue/RTE)
#   .whl/*.whl                the Python packages the GPU image lacks, or holds in another version than the
#                             study pins, at the versions of constraints.txt (x86-64, CPython 3.12)
#
# Both folders are ignored by git: when you copy the repository to the GPU machine, copy .whl/ and .gpu_assets/
# with it (a copy of the tracked files alone leaves them out).
# Usage: bash benchmarks/prepare_gpu_assets.sh        (SHARED=DIR for another shared folder, PYTHON=python3 to
#        download with, PY_VERSION=3.12 for the wheels of another Python: benchmarks/rehearse_gpu_check.sh)
# It ends by checking that every requirement of the wheels in .whl/ (their METADATA's Requires-Dist) is met by
# another wheel there or named by benchmarks/gpu_target_stack.txt, the GPU machine's own stack (exit 2 naming
# what is not).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared}
PYTHON=${PYTHON:-python3}
PY_VERSION=${PY_VERSION:-3.12}

# The GPU image (benchmarks/gpu_target_stack.txt) has torch 2.11, transformers 5.17, accelerate 1.15,
# huggingface_hub 1.33, tokenizers 0.23, safetensors 0.8, numpy, pyarrow, scipy, scikit-learn, matplotlib, rich,
# psutil, regex and PyYAML, but no pydantic or datasets (nor wandb: the check runs with tracking.backend=none).
# Downloaded: what is missing, with the dependencies the image lacks (read from the wheels' Requires-Dist: datasets
# needs dill, multiprocess and xxhash, which some images have and others lack), and the packages whose version
# there is unknown (peft; pandas, which the report needs at >= 3.1; typing_extensions, which pydantic-core needs
# at >= 4.16). Not downloaded: torch (the image's CUDA build), transformers (the image's 5.17, the lowest release
# pyproject.toml admits: the check then also proves that claim on a GPU; the smoke check passes with
# transformers 5.17, peft 0.21.2, accelerate 1.3 and datasets 4.0 here) and pyarrow (40 MB).
PACKAGES=(pydantic pydantic_core annotated-types typing-inspection typing_extensions
          datasets dill multiprocess xxhash peft pandas)

rm -rf .whl .gpu_assets/stories260K .gpu_assets/glue/RTE         # .whl anew: only this list, for PY_VERSION
mkdir -p .gpu_assets/glue .whl
cp -r "$SHARED/models/stories260K" .gpu_assets/stories260K
cp -r "$SHARED/data/glue/RTE" .gpu_assets/glue/RTE

specs=()
wheels=()
for name in "${PACKAGES[@]}"; do
    pattern=$(printf '%s' "$name" | sed 's/[-_.]/[-_.]/g')
    version=$(grep -i -E "^${pattern}==" constraints.txt | head -1 | sed 's/.*==//')
    if [ -z "$version" ]; then
        echo "prepare_gpu_assets: $name is not pinned in constraints.txt" >&2
        exit 2
    fi
    specs+=("$name==$version")
    file=$(printf '%s' "$name" | tr '[:upper:]-.' '[:lower:]__')       # a wheel's file-name spelling
    wheels+=(".whl/$file-$version-*.whl")
done

"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${specs[@]}"

"$PYTHON" src/tunebench/bench/gpu_stack.py wheels .whl benchmarks/gpu_target_stack.txt "$PY_VERSION"

echo "wheels for the GPU machine (CPython $PY_VERSION):"
# shellcheck disable=SC2086  # the patterns are globs
ls -l ${wheels[*]} | awk '{printf "  %8.1f MiB  %s\n", $5 / 1048576, $NF}'
# shellcheck disable=SC2086
du -ch ${wheels[*]} | tail -1 | sed 's/^/  /'
echo "to copy to the GPU machine with the repository (.whl and .gpu_assets):"
du -sch .whl .gpu_assets | sed 's/^/  /'
