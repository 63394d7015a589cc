// softmax / log_softmax over the middle axis of a tensor viewed as [outer, dim, inner], stable
// (row max subtracted first), sums in FP32.
//
// Launch shape:
//   inner == 1, dim <= 1024: one warp per row, 8 rows per 256-thread block, rows grid-stride.
//   inner == 1, dim  > 1024: one 256-thread block per row (block reductions), rows grid-stride.
//   inner  > 1: one thread per (outer, inner) column, 1-D grid-stride; neighbouring threads read
//     neighbouring columns, so every pass over dim is coalesced.
// Each path makes three passes over the row (max, sum of exp, write); rows are re-read from L1/L2.
// Later versions: keep a warp's row in registers for dim <= 32 * k to read global memory once.
#include "cuda/common.cuh"

namespace ev {
namespace {

constexpr int kWarpRowMax = 1024;

__device__ __forceinline__ float softmax_out(float v, float mx, float sum, float log_sum, bool log) {
  return log ? v - mx - log_sum : expf(v - mx) / sum;
}

template <typename T>
__global__ void softmax_warp_rows_kernel(int rows, int dim, bool log, const T* __restrict__ x,
                                         T* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int warps = blockDim.x >> 5;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    float mx = -INFINITY;
    for (int i = lane; i < dim; i += 32) mx = fmaxf(mx, cuda::ld(xr + i));
    mx = cuda::warp_max(mx);
    float sum = 0.f;
    for (int i = lane; i < dim; i += 32) sum += expf(cuda::ld(xr + i) - mx);
    sum = cuda::warp_sum(sum);
    const float log_sum = logf(sum);
    for (int i = lane; i < dim; i += 32) cuda::st(yr + i, softmax_out(cuda::ld(xr + i), mx, sum, log_sum, log));
  }
}

template <typename T>
__global__ void softmax_block_rows_kernel(int rows, int dim, bool log, const T* __restrict__ x,
                                          T* __restrict__ y) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) mx = fmaxf(mx, cuda::ld(xr + i));
    mx = cuda::block_max(mx, scratch);
    float sum = 0.f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) sum += expf(cuda::ld(xr + i) - mx);
    sum = cuda::block_sum(sum, scratch);
    const float log_sum = logf(sum);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
      cuda::st(yr + i, softmax_out(cuda::ld(xr + i), mx, sum, log_sum, log));
  }
}

template <typename T>
__global__ void softmax_columns_kernel(int columns, int dim, int inner, bool log,
                                       const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < columns; t += cuda::grid_step()) {
    const int col = static_cast<int>(t);
    const int o = col / inner;
    const int base = o * dim * inner + (col - o * inner);
    float mx = -INFINITY;
    for (int d = 0; d < dim; ++d) mx = fmaxf(mx, cuda::ld(x + base + d * inner));
    float sum = 0.f;
    for (int d = 0; d < dim; ++d) sum += expf(cuda::ld(x + base + d * inner) - mx);
    const float log_sum = logf(sum);
    for (int d = 0; d < dim; ++d)
      cuda::st(y + base + d * inner, softmax_out(cuda::ld(x + base + d * inner), mx, sum, log_sum, log));
  }
}

}  // namespace

void softmax_cuda(const SoftmaxShape& s, DType dt, const void* x, void* y, Stream stream) {
  cuda::to_int(s.outer * s.dim * s.inner, "softmax elements");
  const int outer = cuda::to_int(s.outer, "softmax outer extent");
  const int dim = cuda::to_int(s.dim, "softmax axis extent");
  const int inner = cuda::to_int(s.inner, "softmax inner extent");
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x);
    T* py = static_cast<T*>(y);
    if (inner == 1 && dim <= kWarpRowMax) {
      constexpr int rows_per_block = cuda::kBlock / 32;
      softmax_warp_rows_kernel<T><<<cuda::blocks_for(outer, rows_per_block), cuda::kBlock, 0, st>>>(
          outer, dim, s.log, px, py);
    } else if (inner == 1) {
      softmax_block_rows_kernel<T><<<cuda::blocks_for(outer, 1), cuda::kBlock, 0, st>>>(
          outer, dim, s.log, px, py);
    } else {
      const int columns = outer * inner;
      softmax_columns_kernel<T><<<cuda::blocks_for(columns), cuda::kBlock, 0, st>>>(
          columns, dim, inner, s.log, px, py);
    }
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
