#!/usr/bin/env bash
# One GPU run (about 10 minutes on one GPU; the steps' timeouts add up to 13) of the checks no CPU can make; every figure goes to a file.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]             # on a GPU machine (default OUTDIR: $OUT or gpu_check_out)
#   SMOKE=1 bash benchmarks/gpu_check.sh /tmp/smoke   # the same steps on the CPU with tiny shapes (a dry run)
#
# 1. memory plan vs a measured step: Llama-2-7B shape, full depth, NF4, gradient checkpointing,
#    seq 1024 x micro-batch 4 (does it fit in 24 GB? CUDA peak per component beside the plan); Qwen3-4B too
# 2. SETA vs QLoRA: step-time and peak-memory ratios at equal trainable parameters, same shape, and the
#    block delta's share of SETA's step (NF4 base, bf16 compute, b = 256: the paper presets' Llama-2-7B and
#    Qwen3-4B shapes; bench_train_step.py --delta-share)
# 3. routed generation vs the base (mid Llama, fp32 and bf16)
# 4. the SmolLM2 preset's model, if its files are on this machine (SMOLLM2=path, default the seta asset cache)
# The delta is plain torch ops (gather -> bmm -> index_add, seta.core.blocks). Where its share of a step
# ("delta share" in summary.txt) is above 10%, a fused kernel from a maintained library (or Triton,
# shipped as an optional dependency, never compiled by hand at run time) is the next step; below, not.
# Each step has its own timeout; a failed or timed-out step is recorded in summary.txt and the next runs.
set -u
OUTDIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUTDIR"
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUTDIR/summary.txt"
: > "$SUMMARY"
if [ "${SMOKE:-0}" = 1 ]; then
  DEV="--device cpu"; SHAPE="--layers 1 --seq 32 --batch 1"; REP="--repeats 1 --warmup 0"; QREP=$REP; GEN="--new-tokens 4"
  SMOL_SHAPE="--seq 32 --batch 1"
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  DEV="--device cuda"; SHAPE="--seq 1024 --batch 4"; REP="--repeats 5 --warmup 2"; QREP="--repeats 3 --warmup 1"; GEN=""
  SMOL_SHAPE="--seq 512 --batch 4"
fi
SMOLLM2=${SMOLLM2:-$HOME/.cache/seta/assets/models/SmolLM2-135M-Instruct}

step() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name: $*" | tee -a "$SUMMARY"
  [ "${SMOKE:-0}" = 1 ] && limit=$(( limit * 4 ))  # the CPU is slower even at tiny shapes
  timeout "$limit" "$@" > "$OUTDIR/$name.txt" 2>&1
  local rc=$?
  echo "   rc=$rc after $(( $(date +%s) - t0 )) s" | tee -a "$SUMMARY"
  grep -E "ratio|plan/measured|base weights|expert blocks|grads|activations|peak|fits|machine|step time|SETA peak|delta share" \
    "$OUTDIR/$name.txt" | grep -v "^Loading" | sed 's/^/   /' >> "$SUMMARY"
}

{ date -u; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } >> "$SUMMARY"
step plan_llama2_7b 120 $PY benchmarks/bench_memory_plan.py $DEV --arch llama2-7b $SHAPE --out "$OUTDIR/memory_plan.jsonl"
step train_step_llama2_7b_nf4 200 $PY benchmarks/bench_train_step.py $DEV --arch llama2-7b --4bit --grad-ckpt \
  --delta-share $SHAPE $REP
step plan_qwen3_4b 100 $PY benchmarks/bench_memory_plan.py $DEV --arch qwen3-4b $SHAPE --out "$OUTDIR/memory_plan.jsonl"
step train_step_qwen3_4b_nf4 150 $PY benchmarks/bench_train_step.py $DEV --arch qwen3-4b --4bit --grad-ckpt \
  --delta-share $SHAPE $QREP
step generate_mid_fp32 60 $PY benchmarks/bench_generate.py $DEV --breakdown $GEN $REP
step generate_mid_bf16 60 $PY benchmarks/bench_generate.py $DEV --breakdown --dtype bfloat16 $GEN $REP
if [ -d "$SMOLLM2" ]; then
  step generate_smollm2 60 $PY benchmarks/bench_generate.py $DEV --breakdown --model "$SMOLLM2" --block-size 64 $GEN $REP
  step plan_smollm2 40 $PY benchmarks/bench_memory_plan.py $DEV --model "$SMOLLM2" --no-4bit $SMOL_SHAPE \
    --out "$OUTDIR/memory_plan.jsonl"
else
  echo "== SmolLM2: skipped, no model at $SMOLLM2 (set SMOLLM2=path)" | tee -a "$SUMMARY"
fi
date -u >> "$SUMMARY"
