// lrn (ONNX LRN across channels): x, y [n, c, hw], F32 or F16 storage, FP32 arithmetic.
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per element; a thread sums
// the squares of its channel window (`size` reads, c * hw apart) itself. Neighbouring threads hold
// neighbouring spatial positions, so every read and write is coalesced and the window's rows are
// shared through L1/L2 by the threads of the neighbouring channels.
// Later versions: slide the window along c in registers for large `size`.
#include "cuda/common.cuh"

namespace ev {
namespace {

template <typename T>
__global__ void lrn_kernel(int total, int c, int hw, int before, int after, float scale,
                           float beta, float bias, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < total; t += cuda::grid_step()) {
    const int e = static_cast<int>(t);
    const int ch = (e / hw) % c;
    const int base = e - ch * hw;  // channel 0 of this image and position
    const int k0 = ch - before < 0 ? 0 : ch - before;
    const int k1 = ch + after > c - 1 ? c - 1 : ch + after;
    float sum = 0.f;
    for (int k = k0; k <= k1; ++k) {
      const float v = cuda::ld(x + base + k * hw);
      sum = fmaf(v, v, sum);
    }
    cuda::st(y + e, cuda::ld(x + e) * powf(bias + scale * sum, -beta));
  }
}

}  // namespace

void lrn_cuda(const LrnShape& s, DType dt, const void* x, void* y, Stream stream) {
  const int total = cuda::to_int(s.n * s.c * s.hw, "lrn elements");
  if (total <= 0) return;
  const int c = cuda::to_int(s.c, "lrn channels");
  const int hw = cuda::to_int(s.hw, "lrn spatial size");
  // The window [ch - (size - 1) / 2, ch + size / 2] is clipped to the channels, so sizes beyond
  // twice the channel count behave alike.
  const int64_t size = s.size < 2 * s.c + 1 ? s.size : 2 * s.c + 1;
  const int before = static_cast<int>((size - 1) / 2), after = static_cast<int>(size / 2);
  const float scale = s.alpha / static_cast<float>(s.size);
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "lrn", [&](auto tag) {
    using T = typename decltype(tag)::type;
    lrn_kernel<T><<<cuda::blocks_for(total), cuda::kBlock, 0, st>>>(
        total, c, hw, before, after, scale, s.beta, s.bias, static_cast<const T*>(x),
        static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
