// pad: x [shape] -> y [shape[d] + pad_begin[d] + pad_end[d]], constant / reflect / edge, F32 or F16
// storage (reflect and edge copy bits; the constant is rounded to the storage type).
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per OUTPUT element: the
// writes are coalesced, and so are the reads of interior rows (neighbouring outputs read
// neighbouring inputs). Each thread maps its index back through every dim (up to kMaxDims).
#include "cuda/common.cuh"

namespace ev {
namespace {

struct PadArgs {
  int ndim;
  int shape[kMaxDims];
  int pad_begin[kMaxDims];
  int out[kMaxDims];
  int mode;  // PadMode
  float value;
};

template <typename T>
__global__ void pad_kernel(int total, PadArgs a, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < total; t += cuda::grid_step()) {
    int rem = static_cast<int>(t), xo = 0, xstride = 1;
    bool constant = false;
    for (int d = a.ndim - 1; d >= 0; --d) {
      const int n = a.shape[d];
      int i = rem % a.out[d] - a.pad_begin[d];
      rem /= a.out[d];
      if (i < 0 || i >= n) {
        if (a.mode == static_cast<int>(PadMode::Constant)) {
          constant = true;
          break;
        }
        i = a.mode == static_cast<int>(PadMode::Edge) ? (i < 0 ? 0 : n - 1)
                                                      : (i < 0 ? -i : 2 * (n - 1) - i);
      }
      xo += i * xstride;
      xstride *= n;
    }
    if (constant) cuda::st(y + t, a.value);
    else y[t] = x[xo];
  }
}

}  // namespace

void pad_cuda(const PadShape& s, DType dt, const void* x, void* y, Stream stream) {
  PadArgs a{};
  a.ndim = s.ndim;
  a.mode = static_cast<int>(s.mode);
  a.value = s.value;
  int64_t total = 1;
  for (int d = 0; d < s.ndim; ++d) {
    a.shape[d] = cuda::to_int(s.shape[d], "pad input extent");
    a.pad_begin[d] = cuda::to_int(s.pad_begin[d], "pad");
    a.out[d] = cuda::to_int(s.out_dim(d), "pad output extent");
    total *= s.out_dim(d);
  }
  const int n = cuda::to_int(total, "pad elements");
  if (n <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "pad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    pad_kernel<T><<<cuda::blocks_for(n), cuda::kBlock, 0, st>>>(n, a, static_cast<const T*>(x),
                                                                 static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
