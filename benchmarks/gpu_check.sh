#!/usr/bin/env bash
# The GPU checks of one NVIDIA machine in one go: the `gpu`-marked tests, then the GPU sweep whose
# results are committed under benchmark_results_final/<gpu-slug>/.
#
# It runs where `make setup` can (a .venv with the `gpu` extra) and also where it cannot, e.g. an image
# with CUDA PyTorch, onnx and nvidia-ml-py but no registry: set PY to that python and PYTHONPATH to
# src/ (plus the missing pure-Python wheels). TensorFlow is not needed: with INFERMETER_CACHE_DIR holding
# the model's model.onnx and reference.npz (`infermeter prepare` on any machine), the torch and ONNX
# Runtime engines start from them. Each step has its own time limit and log, so one slow or failing step
# leaves the others' results intact; the sweep writes each row as its cell ends.
#
#   GPU_ID=0 LOGS=gpu_logs RESULTS=benchmark_results bash benchmarks/gpu_check.sh
#   STEPS="tests" bash benchmarks/gpu_check.sh          # only some steps: env tests sweep compile
#   LIMIT_SWEEP=600 bash benchmarks/gpu_check.sh        # another time limit for one step (seconds)
set -u
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LOGS=${LOGS:-gpu_check_logs}
RESULTS=${RESULTS:-benchmark_results}
GPU_ID=${GPU_ID:-0}
STEPS=${STEPS:-env sweep tests compile}
# Cell timing: 1 s warm-up, 2 s measured; the energy window is the measured one (no extra energy pass).
TIMING=${TIMING:---time-s 2 --warmup-time-s 1 --energy-time-s 2 --idle-time-s 2}
BATCHES=${BATCHES:-1,16,128}
EXTRA=${EXTRA:-}  # more `infermeter run` flags for both sweeps, e.g. --resume
COMPILE_BATCHES=${COMPILE_BATCHES:-$BATCHES}
export PYTHONUNBUFFERED=1
mkdir -p "$LOGS"
status=0

step() {  # step NAME SECONDS COMMAND...: run it under its limit (LIMIT_<NAME> overrides), log it, print its tail
  local name=$1 limit=$2 start rc var
  shift 2
  var=LIMIT_${name^^}
  limit=${!var:-$limit}
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name (limit ${limit}s): $*"
  start=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - start ))s"
  tail -n "${TAIL:-25}" "$LOGS/$name.log"
  [ $rc -eq 0 ] || status=1
}

step env 90 bash -c "nvidia-smi; nvidia-smi -q -d POWER,CLOCK,PERFORMANCE | head -80; $PY -m infermeter env; $PY -m infermeter list"

# Torch eager and TorchScript at every precision the GPU takes; ONNX Runtime too (a skipped row with
# the reason where only the CPU package is installed).
step sweep 300 "$PY" -m infermeter run mobilenet_v3_large --gpu-id "$GPU_ID" \
  --engines torch,torchscript,onnxruntime --precisions fp32,tf32,fp16,bf16 --batch-sizes "$BATCHES" \
  $TIMING --results-dir "$RESULTS" --quiet $EXTRA

step tests 240 "$PY" -m pytest -p no:cacheprovider -m gpu -q -rs \
  tests/test_gpu_paths.py tests/test_telemetry_gpu.py tests/test_torch_engines.py tests/test_onnx_engines.py \
  tests/test_quantization.py tests/test_static_shapes.py tests/test_sweep_e2e.py tests/test_tf_engines.py

# torch.compile: one Inductor compile per batch size (static shapes), each in its cell's compile_s. Mode
# `default` here to bound the compile time; COMPILE_MODE=max-autotune measures the CUDA default.
step compile 240 "$PY" -m infermeter run mobilenet_v3_large --gpu-id "$GPU_ID" \
  --engines torch-compile --precisions "${COMPILE_PRECISIONS:-fp16}" --batch-sizes "$COMPILE_BATCHES" \
  --compile-mode "${COMPILE_MODE:-default}" $TIMING --results-dir "$RESULTS" --quiet $EXTRA

exit $status
