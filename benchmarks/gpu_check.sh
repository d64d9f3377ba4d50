#!/usr/bin/env bash
# One command for a GPU window: bash benchmarks/gpu_check.sh OUT [gpu_check.py options]
#
# Installs what the GPU machine lacks (pykeops and keopscore) from the wheels that
# benchmarks/fetch_gpu_wheels.sh put in .whl/ (GPU machines here reach no package index),
# points KeOps at the CUDA toolkit, and runs benchmarks/gpu_check.py with a 9-minute budget.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUT [gpu_check.py options]}
shift
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ! "$PY" -c "import pykeops" >/dev/null 2>&1; then
    if ls .whl/pykeops-*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/skst3d-site .whl/*.whl || exit 1
        export PYTHONPATH="/tmp/skst3d-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "pykeops is not installed and .whl/ holds no wheel of it: run benchmarks/fetch_gpu_wheels.sh first" >&2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# KeOps compiles CUDA at run time with NVRTC: it needs cuda.h, nvrtc.h and libnvrtc.
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null 2>&1; then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    export CUDA_HOME
fi
if [ -n "${CUDA_HOME:-}" ]; then
    export LD_LIBRARY_PATH="$CUDA_HOME/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export KEOPS_CACHE_FOLDER=${KEOPS_CACHE_FOLDER:-/tmp/skst3d-keops}
export PYTHONUNBUFFERED=1
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
