// The CUDA runtime calls of the plan executor (declared in plan.h, namespace plan_cuda): device
// memory, constant upload with float16 conversion, the plan's stream, events, and CUDA graph
// capture. Launch shape: none (host-side runtime calls only).
// Capture uses cudaStreamCaptureModeThreadLocal so that other threads (another Plan, torch's
// allocator) may keep calling the runtime while one plan captures.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <vector>

#include "check.h"
#include "runtime/plan.h"

namespace ev {
namespace plan_cuda {
namespace {
cudaStream_t cs(Stream s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t ce(void* e) { return static_cast<cudaEvent_t>(e); }
}  // namespace

void* alloc(size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(detail::str("plan: cannot allocate ", bytes, " bytes of GPU memory for ",
                                         what, ": ", cudaGetErrorString(err)));
  }
  return p;
}

void free(void* p) noexcept {
  if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

void upload(void* dst, const float* src, int64_t count, DType dt) {
  if (count <= 0) return;
  if (dt == DType::F32) {
    EV_CUDA_CHECK(cudaMemcpy(dst, src, static_cast<size_t>(count) * sizeof(float), cudaMemcpyHostToDevice));
    return;
  }
  std::vector<__half> h(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) h[i] = __float2half_rn(src[i]);  // as torch's .half()
  EV_CUDA_CHECK(cudaMemcpy(dst, h.data(), h.size() * sizeof(__half), cudaMemcpyHostToDevice));
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  EV_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

void stream_destroy(Stream s) noexcept {
  if (s && cudaStreamDestroy(cs(s)) != cudaSuccess) cudaGetLastError();
}

Stream legacy_stream() { return cudaStreamLegacy; }

void stream_sync(Stream s) { EV_CUDA_CHECK(cudaStreamSynchronize(cs(s))); }

void copy_async(void* dst, const void* src, size_t bytes, Stream s) {
  EV_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cs(s)));
}

void* event_create(bool timing) {
  cudaEvent_t e = nullptr;
  EV_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
  return e;
}

void event_destroy(void* e) noexcept {
  if (e && cudaEventDestroy(ce(e)) != cudaSuccess) cudaGetLastError();
}

void event_record(void* e, Stream s) { EV_CUDA_CHECK(cudaEventRecord(ce(e), cs(s))); }

void stream_wait(Stream s, void* e) { EV_CUDA_CHECK(cudaStreamWaitEvent(cs(s), ce(e), 0)); }

void event_sync(void* e) { EV_CUDA_CHECK(cudaEventSynchronize(ce(e))); }

double event_seconds(void* start, void* stop) {
  float ms = 0.f;
  EV_CUDA_CHECK(cudaEventElapsedTime(&ms, ce(start), ce(stop)));
  return ms * 1e-3;
}

void capture_begin(Stream s) {
  EV_CUDA_CHECK(cudaStreamBeginCapture(cs(s), cudaStreamCaptureModeThreadLocal));
}

void* capture_end(Stream s) {
  cudaGraph_t g = nullptr;
  cudaError_t err = cudaStreamEndCapture(cs(s), &g);
  if (err != cudaSuccess || !g) {
    cudaGetLastError();
    if (g) cudaGraphDestroy(g);
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, g, 0);
  cudaGraphDestroy(g);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return exec;
}

void graph_launch(void* exec, Stream s) {
  EV_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), cs(s)));
}

void graph_destroy(void* exec) noexcept {
  if (exec && cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)) != cudaSuccess)
    cudaGetLastError();
}

}  // namespace plan_cuda
}  // namespace ev
