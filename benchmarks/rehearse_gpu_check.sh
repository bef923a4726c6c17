#!/usr/bin/env bash
# Rehearse the GPU check on any machine with a package index, without a GPU: the smoke check run exactly as a GPU
# machine without network runs benchmarks/gpu_check.sh, so that whatever would fail there fails here first.
#
#   bash benchmarks/rehearse_gpu_check.sh [--python PY] [--torch SPEC] [--stack FILE] [--work DIR]
#                                         [--venv-only] [--fresh-venv] [-- gpu_check.sh arguments (default --smoke)]
#
# 1. A venv of PY (default python3.12: the GPU machine's Python) with the target's preinstalled stack
#    (--stack, default benchmarks/gpu_target_stack.txt; --torch SPEC replaces its torch line, as a machine
#    without a GPU needs a CPU build), reused while the stack, torch and Python are unchanged (--fresh-venv
#    builds it anew). pydantic, datasets, wandb and xxhash must not be in it (the stack file says why).
# 2. A copy of the working tree as you would copy it to the GPU machine (tracked and untracked files that git
#    does not ignore) into DIR/repo, with no data or shared folder beside it, and benchmarks/prepare_gpu_assets.sh
#    run in the copy for that venv's Python: the wheels (.whl) and assets (.gpu_assets) copied with it.
# 3. The network cut (`unshare -rn`: a network namespace with only loopback; where unshare cannot, proxy
#    variables that point nowhere, which stop HTTP clients but not raw sockets: said so), checked, and then
#    `bash benchmarks/gpu_check.sh --smoke` in the copy with a clean environment (env -i: PATH with the venv
#    first, an empty HOME, no pip configuration, OUT=DIR/out).
# Exit status: gpu_check.sh's (0 passed, 1 a part failed, 2 it could not start), or 3 when the rehearsal itself
# could not be set up. DIR (default /tmp/gpu_check_rehearsal) keeps the venv, the copy and the output.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=python3.12
TORCH=""
STACK="$ROOT/benchmarks/gpu_target_stack.txt"
WORK=/tmp/gpu_check_rehearsal
VENV_ONLY=0
FRESH=0
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PY=$2; shift 2 ;;
        --torch) TORCH=$2; shift 2 ;;
        --stack) STACK=$(cd "$(dirname "$2")" && pwd)/$(basename "$2"); shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        --venv-only) VENV_ONLY=1; shift ;;
        --fresh-venv) FRESH=1; shift ;;
        --) shift; break ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "rehearse_gpu_check: unknown option $1 (--help)" >&2; exit 3 ;;
    esac
done
CHECK_ARGS=("$@")
[ ${#CHECK_ARGS[@]} -gt 0 ] || CHECK_ARGS=(--smoke)
say() { echo "rehearse_gpu_check: $*"; }
fail() { echo "rehearse_gpu_check: $*" >&2; exit 3; }

command -v "$PY" >/dev/null || fail "no $PY here: name another Python with --python (the GPU machine has 3.12)"
PYV=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$PYV" = 3.12 ] || say "rehearsing with Python $PYV, not the GPU machine's 3.12 (wheels are fetched for $PYV)"
[ -f "$STACK" ] || fail "$STACK: stack file not found"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# ---- 1. the venv of the target's stack
reqs="$WORK/stack.txt"
if [ -n "$TORCH" ]; then
    sed -E "s|^torch([=<>!~ ].*)?$|$TORCH|" "$STACK" > "$reqs.new"
else
    cp "$STACK" "$reqs.new"
fi
stamp="$("$PY" -c 'import sys; print(sys.executable, sys.version)') $(sha256sum < "$reqs.new")"
if [ "$FRESH" = 1 ] || [ ! -f "$WORK/venv/.stamp" ] || [ "$(cat "$WORK/venv/.stamp")" != "$stamp" ]; then
    say "building $WORK/venv ($PY $PYV) with $(grep -cvE '^\s*(#|$)' "$reqs.new") requirements of $(basename "$STACK")"
    rm -rf "$WORK/venv"
    "$PY" -m venv "$WORK/venv"
    "$WORK/venv/bin/python" -m pip install -q --upgrade pip || true
    "$WORK/venv/bin/python" -m pip install -q -r "$reqs.new" || fail "pip could not install the stack"
    mv "$reqs.new" "$reqs"
    echo "$stamp" > "$WORK/venv/.stamp"
else
    rm -f "$reqs.new"
    say "reusing $WORK/venv (same Python and stack)"
fi
present=$("$WORK/venv/bin/python" - <<'EOF'
import importlib.metadata as md
absent = ("pydantic", "datasets", "wandb", "xxhash")
print(" ".join(n for n in absent if any(d.metadata["Name"].lower() == n for d in md.distributions())))
EOF
)
if [ -n "$present" ]; then            # pulled in by another package: gone on the target, so gone here
    say "removing $present from the venv (the GPU machine has none of them)"
    # shellcheck disable=SC2086
    "$WORK/venv/bin/python" -m pip uninstall -q -y $present
fi
say "venv: $("$WORK/venv/bin/python" -c 'import importlib.metadata as m; print(", ".join(f"{n} {m.version(n)}" for n in ("torch", "transformers", "accelerate", "huggingface_hub", "numpy")))')"
[ "$VENV_ONLY" = 0 ] || exit 0

# ---- 2. the copy for the GPU machine, with its wheels and assets
rm -rf "$WORK/repo" "$WORK/out" "$WORK/home" "$WORK/site" "$WORK/tmp"
mkdir -p "$WORK/repo" "$WORK/out" "$WORK/home" "$WORK/tmp"
(cd "$ROOT" && git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"; done | tar --null -T - -cf -) | tar -xf - -C "$WORK/repo"
SHARED=${SHARED:-$ROOT/../shared}
(cd "$WORK/repo" && SHARED="$SHARED" PYTHON="$WORK/venv/bin/python" PY_VERSION="$PYV" \
    bash benchmarks/prepare_gpu_assets.sh) || fail "prepare_gpu_assets.sh failed in the copy"
for beside in shared data; do
    [ ! -e "$WORK/$beside" ] || fail "$WORK/$beside exists: the copy must have nothing beside it"
done

# ---- 3. no network, then the check as the GPU machine runs it
if unshare -rn true 2>/dev/null; then
    cut=(unshare -rn)
    how="unshare -rn (a network namespace with only loopback)"
    proxy=()
else
    cut=()
    how="proxy variables pointing nowhere (unshare is not allowed here: raw sockets are not blocked)"
    proxy=(http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9
           HTTPS_PROXY=http://127.0.0.1:9 no_proxy= NO_PROXY=)
fi
# shellcheck disable=SC2016
probe='import socket, sys, urllib.request
try:
    if len(sys.argv) > 1:
        urllib.request.urlopen("https://pypi.org/simple/", timeout=10)
    else:
        socket.create_connection(("pypi.org", 443), timeout=10)
except OSError as e:
    print(f"network cut: {type(e).__name__}")
    sys.exit(0)
print("network still reachable")
sys.exit(1)'
if [ ${#cut[@]} -gt 0 ]; then
    "${cut[@]}" "$WORK/venv/bin/python" -c "$probe" || fail "the network is still reachable under ${cut[*]}"
else
    env "${proxy[@]}" "$WORK/venv/bin/python" -c "$probe" http || fail "the network is still reachable"
fi
say "network cut by $how; running bash benchmarks/gpu_check.sh ${CHECK_ARGS[*]} in $WORK/repo"
set +e
(cd "$WORK/repo" && "${cut[@]}" env -i "${proxy[@]}" PATH="$WORK/venv/bin:/usr/local/bin:/usr/bin:/bin" \
    HOME="$WORK/home" LANG=C.UTF-8 TMPDIR="$WORK/tmp" PIP_CONFIG_FILE=/dev/null OUT="$WORK/out" \
    GPU_CHECK_SITE="$WORK/site" bash benchmarks/gpu_check.sh "${CHECK_ARGS[@]}")
rc=$?
set -e
say "gpu_check.sh exited $rc (Python $PYV, $(grep -E '^torch' "$reqs")); $WORK/out holds: $(ls -A "$WORK/out" | tr '\n' ' ')"
# the check's scratch must be gone; torchinductor_<user> is TorchInductor's cache, which a second try reuses
left=$(find "$WORK/tmp" -mindepth 1 -maxdepth 1 -printf '%f ')
[ -z "$left" ] || say "left in TMPDIR ($WORK/tmp): $left"
exit "$rc"
