#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with everything the package, its tests, the
# baselines and lm-evaluation-harness need.
#
# torch 2.13.0 is installed first, on its own, from the index pip is configured with, or from
# $TORCH_INDEX_URL when set. Which build arrives depends on that index, not on this script: PyPI's
# Linux x86-64 wheel is the CUDA build (several GB; it also runs on a CPU), while
# https://download.pytorch.org/whl/cpu serves the CPU-only build. The script prints which one it got.
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   bash scripts/setup.sh   # CPU only
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 bash scripts/setup.sh   # CUDA 12.8
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  python -m pip install -q "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
else
  python -m pip install -q "torch==2.13.0"
fi
python -m pip install -q -e ".[dev]"
python -c "import torch, transformers, seta; print('seta', seta.__version__, '| torch', torch.__version__, '(CUDA ' + torch.version.cuda + ' build)' if torch.version.cuda else '(CPU-only build)', '| transformers', transformers.__version__)"
