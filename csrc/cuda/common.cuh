// Shared by every CUDA kernel: FP32/FP16 load-store helpers (storage type T, arithmetic always in
// float), grid-size helpers for grid-stride loops, host-side int32 narrowing, and the dtype dispatch
// that turns a runtime DType into a template argument.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "check.h"
#include "epilogue.h"
#include "ops.h"

namespace ev {
namespace cuda {

// Storage <-> compute conversion. FP16 rounds to nearest even on store, like torch's .half().
__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half_rn(v); }

constexpr int kBlock = 256;
// Cap for 1-D grids: enough blocks to fill any current GPU many times over; a grid-stride loop
// covers the rest.
constexpr int64_t kMaxBlocks = 1 << 16;

inline unsigned blocks_for(int64_t n, int block = kBlock) {
  int64_t b = (n + block - 1) / block;
  if (b < 1) b = 1;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return static_cast<unsigned>(b);
}

// Grid-stride loops run a 64-bit counter so that the final `+= step` can never wrap; the body
// converts it to int (every CUDA tensor has fewer than 2^31 elements).
__device__ __forceinline__ int64_t grid_start() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Narrows a host-side size to int for 32-bit kernel index math. Sizes come validated from the
// bindings, so a failure means a shape the 32-bit kernels cannot address.
inline int to_int(int64_t v, const char* what) {
  EV_CHECK(v >= INT_MIN && v <= INT_MAX, "CUDA kernels index with 32-bit integers: ", what, " = ", v,
           " is out of range");
  return static_cast<int>(v);
}

inline cudaStream_t to_stream(Stream s) { return static_cast<cudaStream_t>(s); }

template <typename T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<float>) or f(TypeTag<__half>) for the storage dtype of a call. The bindings only
// pass float dtypes here, so anything else is an internal error.
template <typename F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(TypeTag<float>{}); return;
    case DType::F16: f(TypeTag<__half>{}); return;
    default: break;
  }
  EV_ASSERT(false, op, ": CUDA kernels take float32 or float16 tensors, got dtype ",
            static_cast<int>(dt));
}

// The fused epilogue (epilogue.h) as an out-of-line call, for the GEMM-style kernels that apply it
// to every element of an unrolled micro-tile: inlining all ten activations into each of the 16
// stores of a 4 x 4 tile multiplies code size and compile time (by ~10x for gemm.cu over six
// architectures) for work done once per output element.
__device__ __noinline__ inline float epilogue_call(float acc, float bias, float res, Epilogue e) {
  return apply_epilogue(acc, bias, res, e);
}

// PyTorch's NaN-propagating max (the CPU kernels' max_nan): once a NaN is seen it wins.
__device__ __forceinline__ float max_nan(float m, float v) { return (v > m || isnan(v)) ? v : m; }

// Warp-wide reductions over all 32 lanes (every lane gets the result); the max propagates NaN.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = max_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide reductions (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the leading barrier lets a block reuse it back to back.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : 0.f);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < static_cast<int>(blockDim.x >> 5) ? scratch[lane] : -INFINITY);
}

}  // namespace cuda
}  // namespace ev
