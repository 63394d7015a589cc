// Device queries for edgevision.info() and device selection.
//
// Launch shape: none (host-only runtime calls).
// The queries never throw: a CUDA build is imported, and info() called, on machines without a
// driver or GPU (cudart is linked statically). Errors they meet are cleared with cudaGetLastError
// so a failed query does not surface later as the "last error" of an unrelated kernel launch.
// Later versions: NVML for clocks/temperature lives in edgevision/profile, not here.
#include <cstring>

#include "cuda/common.cuh"

namespace ev {

int cuda_runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

int cuda_driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

// *why is written only when 0 is returned; it points to a static string.
int cuda_device_count(const char** why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = cudaGetErrorString(err);
    return 0;
  }
  if (n <= 0) {
    if (why) *why = "no CUDA device found";
    return 0;
  }
  return n;
}

bool cuda_device_info(int index, CudaDeviceInfo* out) {
  if (!out) return false;
  const int count = cuda_device_count(nullptr);
  if (index < 0 || index >= count) return false;
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  const size_t len = strnlen(p.name, sizeof(out->name) - 1);
  std::memcpy(out->name, p.name, len);
  out->name[len] = '\0';
  out->major = p.major;
  out->minor = p.minor;
  out->multiprocessors = p.multiProcessorCount;
  out->total_memory = p.totalGlobalMem;
  return true;
}

void cuda_set_device(int index) {
  const char* why = nullptr;
  const int count = cuda_device_count(&why);
  EV_CHECK(count > 0, "no usable CUDA device: ", why ? why : "unknown reason");
  EV_CHECK(index >= 0 && index < count, "CUDA device index ", index, " is out of range: ", count,
           count == 1 ? " device is" : " devices are", " visible");
  EV_CUDA_CHECK(cudaSetDevice(index));
}

// The first CUDA call of every CUDA op (bindings.cpp), so a machine without a driver or GPU gets
// this message instead of a bare runtime error code.
int cuda_current_device() {
  int d = 0;
  const cudaError_t err = cudaGetDevice(&d);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(detail::str(
        "CUDA is not usable on this machine: ", cudaGetErrorString(err), " (", cudaGetErrorName(err),
        "). CUDA tensors need an NVIDIA GPU and driver; pass CPU tensors to run on the CPU."));
  }
  return d;
}

}  // namespace ev
