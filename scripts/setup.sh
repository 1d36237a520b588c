#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv with everything the package,
# its tests, the baselines and lm-evaluation-harness need. torch 2.13.0 (CPU build) is installed first so
# that pip never resolves torch to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
python -c "import torch, transformers, seta; print('seta', seta.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
