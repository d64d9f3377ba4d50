#!/usr/bin/env bash
# Put the wheels a GPU machine without internet needs into .whl/ (ignored by git):
# pykeops and keopscore, pure Python, so one wheel serves every Python 3 and platform.
# Run it where pip reaches PyPI; benchmarks/gpu_check.sh installs from .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip wheel --quiet --no-deps --wheel-dir .whl "pykeops==2.3" "keopscore==2.3"
ls -l .whl
