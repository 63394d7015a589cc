#!/usr/bin/env bash
# Everything a GPU machine is for, in one command (GPU time is scarce; each step has its own time limit and
# writes its log to $OUT even when a later one fails): build edgevision with the CUDA kernels for one
# architecture, run the CUDA tests, then the GPU benchmarks (custom kernels vs cuDNN through torch; whole models
# native CUDA vs torch CUDA, fp32 and fp16, batch 1 and 8).
#
#   OUT=gpu-out bash benchmarks/gpu_session.sh [ARCH (default 90)] [STEPS (default build,test,ops,models)]
#
# Needs python3 with torch (CUDA), onnx, onnxruntime, pybind11, scikit-build-core, cmake, ninja and nvcc; it
# installs nothing from the network (pip install --no-build-isolation --no-deps).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
ARCH=${1:-90}
STEPS=${2:-build,test,ops,models}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { [[ ",$STEPS," == *",$1,"* ]]; }
stamp() { echo "[$(date +%T)] $*"; }

{ nvidia-smi; nvcc --version; python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } \
  >"$OUT/env.txt" 2>&1
if step build; then
  stamp "build (sm_$ARCH)"
  EDGEVISION_CUDA=ON EDGEVISION_CUDA_ARCHS="$ARCH" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    timeout 420 python3 -m pip install --no-build-isolation --no-deps -v . >"$OUT/build.log" 2>&1 \
    || { stamp "build FAILED"; grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
fi
# Run from outside the source tree's package: the tests and benchmarks import the installed edgevision.
python3 -P -c "import edgevision, json; print(json.dumps(edgevision.info(), default=str))" >>"$OUT/env.txt" 2>&1
stamp "installed: $(tail -c 400 "$OUT/env.txt")"
if step test; then
  stamp "CUDA tests"
  timeout 240 python3 -P -m pytest -q -rfE --tb=short -p no:cacheprovider -n 8 --timeout 150 \
    -k "cuda or gpu" tests/ >"$OUT/tests.log" 2>&1
  stamp "tests rc=$?: $(tail -n 1 "$OUT/tests.log")"
  grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -40
fi
if step ops; then
  stamp "bench_ops (CUDA cases)"
  timeout 180 python3 benchmarks/bench_ops.py --no-cpu --budget 0.3 --out "$OUT/bench_ops_gpu.json" \
    >"$OUT/bench_ops.log" 2>&1
  stamp "bench_ops rc=$?"
fi
if step models; then
  stamp "bench_models (GPU contenders; ONNX Runtime CPU as the reference output)"
  timeout 240 python3 benchmarks/bench_models.py --no-cpu --batches 1 8 --budget 0.5 --threads "$(nproc)" \
    --out "$OUT/bench_models_gpu.json" >"$OUT/bench_models.log" 2>&1
  stamp "bench_models rc=$?"
  grep "^|" "$OUT/bench_models.log" | head -80
fi
