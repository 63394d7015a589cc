// reduce (mean, sum, max, min) over the middle axis of [outer, dim, inner] -> [outer, inner], F32
// or F16 storage, FP32 accumulation. Max and min propagate NaN; min is computed as -max(-x) so both
// share common.cuh's NaN-propagating warp and block reductions.
//
// Launch shape (as softmax.cu):
//   inner == 1, dim <= 1024: one warp per row, 8 rows per 256-thread block, rows grid-stride.
//   inner == 1, dim  > 1024: one 256-thread block per row (block reduction), rows grid-stride.
//   inner  > 1: one thread per (outer, inner) column, 1-D grid-stride; neighbouring threads read
//     neighbouring columns, so every step along dim is coalesced.
// Later versions: split very long columns (small outer * inner, large dim) over several threads.
#include "cuda/common.cuh"

namespace ev {
namespace {

constexpr int kWarpRowMax = 1024;

// Values are folded as sums for Mean/Sum and as maxima of sign * x for Max (sign 1) and Min (-1).
__device__ __forceinline__ float fold(float acc, float v, bool is_sum, float sign) {
  return is_sum ? acc + v : cuda::max_nan(acc, sign * v);
}

__device__ __forceinline__ float finish(float acc, bool is_sum, float sign, float inv_dim) {
  return is_sum ? acc * inv_dim : sign * acc;
}

template <typename T>
__global__ void reduce_warp_rows_kernel(int rows, int dim, bool is_sum, float sign, float inv_dim,
                                        const T* __restrict__ x, T* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int warps = blockDim.x >> 5;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * warps + (threadIdx.x >> 5); row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps) {
    const T* xr = x + row * dim;
    float acc = is_sum ? 0.f : -INFINITY;
    for (int i = lane; i < dim; i += 32) acc = fold(acc, cuda::ld(xr + i), is_sum, sign);
    acc = is_sum ? cuda::warp_sum(acc) : cuda::warp_max(acc);
    if (lane == 0) cuda::st(y + row, finish(acc, is_sum, sign, inv_dim));
  }
}

template <typename T>
__global__ void reduce_block_rows_kernel(int rows, int dim, bool is_sum, float sign, float inv_dim,
                                         const T* __restrict__ x, T* __restrict__ y) {
  __shared__ float scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    float acc = is_sum ? 0.f : -INFINITY;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) acc = fold(acc, cuda::ld(xr + i), is_sum, sign);
    acc = is_sum ? cuda::block_sum(acc, scratch) : cuda::block_max(acc, scratch);
    if (threadIdx.x == 0) cuda::st(y + row, finish(acc, is_sum, sign, inv_dim));
  }
}

template <typename T>
__global__ void reduce_columns_kernel(int columns, int dim, int inner, bool is_sum, float sign,
                                      float inv_dim, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < columns; t += cuda::grid_step()) {
    const int col = static_cast<int>(t);
    const int o = col / inner;
    const T* xp = x + o * dim * inner + (col - o * inner);
    float acc = is_sum ? 0.f : -INFINITY;
    for (int d = 0; d < dim; ++d) acc = fold(acc, cuda::ld(xp + d * inner), is_sum, sign);
    cuda::st(y + col, finish(acc, is_sum, sign, inv_dim));
  }
}

}  // namespace

void reduce_cuda(const ReduceShape& s, DType dt, const void* x, void* y, Stream stream) {
  cuda::to_int(s.outer * s.dim * s.inner, "reduce elements");
  const int outer = cuda::to_int(s.outer, "reduce outer extent");
  const int dim = cuda::to_int(s.dim, "reduce axis extent");
  const int inner = cuda::to_int(s.inner, "reduce inner extent");
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  const bool is_sum = s.op == ReduceOp::Mean || s.op == ReduceOp::Sum;
  const float sign = s.op == ReduceOp::Min ? -1.f : 1.f;
  const float inv_dim = s.op == ReduceOp::Mean ? 1.f / static_cast<float>(dim) : 1.f;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "reduce", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x);
    T* py = static_cast<T*>(y);
    if (inner == 1 && dim <= kWarpRowMax) {
      constexpr int rows_per_block = cuda::kBlock / 32;
      reduce_warp_rows_kernel<T><<<cuda::blocks_for(outer, rows_per_block), cuda::kBlock, 0, st>>>(
          outer, dim, is_sum, sign, inv_dim, px, py);
    } else if (inner == 1) {
      reduce_block_rows_kernel<T><<<cuda::blocks_for(outer, 1), cuda::kBlock, 0, st>>>(
          outer, dim, is_sum, sign, inv_dim, px, py);
    } else {
      const int columns = outer * inner;
      reduce_columns_kernel<T><<<cuda::blocks_for(columns), cuda::kBlock, 0, st>>>(
          columns, dim, inner, is_sum, sign, inv_dim, px, py);
    }
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
