#!/usr/bin/env bash
# The GPU checks of one NVIDIA machine in one command, within 9 minutes on an H100 or H200: the step limits
# add up to at most TOTAL_S (540 s), each cut to what is left of it, so the whole never runs longer.
# What has never run on a GPU goes first: the sweep on the clean ONNX graph, the scenarios (single-stream,
# server at a QPS, multi-stream), torch.compile bf16, device-resident inputs against host inputs (the clean
# sweep's torch fp16 cells); then the `gpu`-marked tests. Results land under RESULTS (io-device/ for the
# device-resident cells, whose cell ids equal the host ones) for benchmark_results_final/<gpu-slug>/.
#
# Every step leaves rows or skipped rows: each sweep gets --group-timeout-s, so an engine group that runs
# long fails its unfinished cells with the reason, and a sweep cut by its step's limit (SIGTERM) writes a
# failed row for each cell it did not finish. Each step has its own log; the sweep writes each row as its
# cell ends.
#
# It runs where `make setup` can (a .venv with the `gpu` extra) and also where it cannot, e.g. an image
# with CUDA PyTorch, onnx and nvidia-ml-py but no registry: set PY to that python and PYTHONPATH to
# src/ (plus the missing pure-Python wheels). TensorFlow is not needed: with INFERMETER_CACHE_DIR holding
# the model's model.onnx and reference.npz (`infermeter prepare` on any machine), the torch and ONNX
# Runtime engines start from them.
#
#   GPU_ID=0 LOGS=gpu_logs RESULTS=benchmark_results bash benchmarks/gpu_check.sh
#   STEPS="clean tests" bash benchmarks/gpu_check.sh    # only some steps: env clean scenarios compile io tests
#   LIMIT_CLEAN=200 bash benchmarks/gpu_check.sh        # another limit for one step (seconds)
#   DRY_RUN=1 bash benchmarks/gpu_check.sh              # the plan: each step, its limit, its command; runs nothing
set -u
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
LOGS=${LOGS:-gpu_check_logs}
RESULTS=${RESULTS:-benchmark_results}
GPU_ID=${GPU_ID:-0}
STEPS=${STEPS:-env clean scenarios compile io tests}
TOTAL_S=${TOTAL_S:-540}
KILL_S=5  # after its limit a step gets this long to stop before SIGKILL (its sweep writes its failed rows)
DRY_RUN=${DRY_RUN:-}
MODEL=${MODEL:-mobilenet_v3_large}
# Cell timing: 1 s warm-up, 2 s measured; the energy window grows to what the counter's update period needs
# (<= 1% quantisation); the idle baseline waits at most 10 s for power to stop falling.
TIMING=${TIMING:---time-s 2 --warmup-time-s 1 --energy-time-s 2 --idle-time-s 2 --idle-max-wait-s 10}
BATCHES=${BATCHES:-1,128}
QPS=${QPS:-200}
STREAMS=${STREAMS:-4}
EXTRA=${EXTRA:-}  # more `infermeter run` flags for every sweep, e.g. --resume
export PYTHONUNBUFFERED=1
[ -n "$DRY_RUN" ] || mkdir -p "$LOGS"
status=0
clock=0  # seconds used so far (in a dry run: every step at its full limit)
start=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run it under its limit (LIMIT_<NAME> overrides, cut to what is left)
  local name=$1 limit=$2 t0 rc var left
  shift 2
  var=LIMIT_${name^^}
  limit=${!var:-$limit}
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  [ -n "$DRY_RUN" ] || clock=$(( $(date +%s) - start ))
  left=$(( TOTAL_S - clock - KILL_S ))
  if [ "$left" -lt 10 ]; then
    echo "== $name: not run, ${left}s left of TOTAL_S=${TOTAL_S}"
    status=1
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (limit ${limit}s): $(printf '%q ' "$@")"
  if [ -n "$DRY_RUN" ]; then
    clock=$(( clock + limit + KILL_S ))
    return 0
  fi
  t0=$(date +%s)
  timeout -k "$KILL_S" "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 ))s"
  tail -n "${TAIL:-25}" "$LOGS/$name.log"
  [ $rc -eq 0 ] || status=1
}

# one `infermeter run` of the model on this GPU with the shared timing (TIMING and EXTRA: lists of flags)
# shellcheck disable=SC2206
SWEEP=("$PY" -m infermeter run "$MODEL" --gpu-id "$GPU_ID" $TIMING --quiet $EXTRA)

step env 20 bash -c "nvidia-smi; nvidia-smi -q -d POWER,CLOCK,PERFORMANCE | head -80; $PY -m infermeter env"

# The clean graph: torch (onnx2torch of the clean export), TorchScript and ONNX Runtime at fp16 (a skipped
# row with the reason where only the CPU package is installed). Host inputs: the io step's other half.
step clean 140 "${SWEEP[@]}" --engines torch,torchscript,onnxruntime --precisions fp16 --batch-sizes "$BATCHES" \
  --group-timeout-s 45 --results-dir "$RESULTS"

# The scenarios at batch 1: single-stream, server at QPS arrivals per second, multi-stream with STREAMS clients.
step scenarios 80 "${SWEEP[@]}" --engines torch --precisions fp16 --scenario single-stream,server,multi-stream \
  --target-qps "$QPS" --streams "$STREAMS" --batch-sizes 1 --group-timeout-s 70 --results-dir "$RESULTS"

# torch.compile bf16: one Inductor compile per batch size (static shapes), each in its cell's compile_s. Mode
# `default` bounds the compile time; COMPILE_MODE=max-autotune measures the CUDA default.
step compile 130 "${SWEEP[@]}" --engines torch-compile --precisions bf16 --batch-sizes "$BATCHES" \
  --compile-mode "${COMPILE_MODE:-default}" --group-timeout-s 120 --results-dir "$RESULTS"

# Device-resident inputs: the clean step's torch fp16 cells again with inputs already on the GPU.
step io 60 "${SWEEP[@]}" --engines torch --precisions fp16 --batch-sizes "$BATCHES" --io device \
  --group-timeout-s 55 --results-dir "$RESULTS/io-device"

step tests 100 "$PY" -m pytest -p no:cacheprovider -m gpu -q -rs \
  tests/test_gpu_paths.py tests/test_telemetry_gpu.py tests/test_torch_engines.py tests/test_onnx_engines.py \
  tests/test_quantization.py tests/test_static_shapes.py tests/test_sweep_e2e.py tests/test_tf_engines.py

[ -z "$DRY_RUN" ] || echo "== plan: at most ${clock}s of TOTAL_S=${TOTAL_S}"
exit $status
