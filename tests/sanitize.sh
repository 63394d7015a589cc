#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UBSan (CPU kernels; CUDA off) and runs the op tests
# against it. Any out-of-bounds access, use-after-free or undefined behaviour aborts the run.
#   bash tests/sanitize.sh [pytest args]      (default: every op test)
# Needs cmake, ninja, pybind11 and the test dependencies in the current Python.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/asan
pkg=build/asan-pkg
mkdir -p build
EDGEVISION_CUDA=OFF EDGEVISION_SANITIZE=ON cmake -S . -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v python)" > "$build.configure.log"
cmake --build "$build" -j2
# A package tree holding the Python sources and the sanitized module (the source tree stays clean).
rm -rf "$pkg" && mkdir -p "$pkg"
cp -r edgevision "$pkg/" && rm -f "$pkg"/edgevision/_C*.so && cp "$build"/_C*.so "$pkg/edgevision/"
# The ASan runtime must be loaded before anything else, and libstdc++ with it so ASan's __cxa_throw
# interceptor finds the real one (else the first C++ exception, i.e. any ValueError from a binding,
# aborts). Python itself is not instrumented and keeps memory alive at exit: leak detection is off.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$PWD/$pkg"
if [ $# -eq 0 ]; then
  # Every op's test file (tests/test_<op>.py for csrc/cpu/<op>.cpp) and the cross-op API tests.
  set -- tests/test_ops_api.py
  for src in csrc/cpu/*.cpp; do
    t="tests/test_$(basename "$src" .cpp).py"
    if [ -f "$t" ]; then set -- "$@" "$t"; fi
  done
fi
python -P -c "import edgevision, sys; assert edgevision.info()['build']['sanitizers'], 'not the sanitized build'; print('sanitized build:', edgevision.__file__)"
exec python -P -m pytest -q -p no:cacheprovider "$@"   # -P: import the sanitized package, not ./edgevision
