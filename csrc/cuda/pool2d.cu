// Pooling: max_pool2d (with dilation), avg_pool2d (count_include_pad or not), global average and
// global max pooling. Window and divisor semantics are those of pool2d_ref (PyTorch/ONNX): a window
// starts at o * stride - pad; with count_include_pad the divisor is the window clipped to the padded
// input (its end clipped to in + pad_end), otherwise the number of in-bounds elements; a window with
// no element inside the input averages to 0. Max propagates NaN and is -inf over an empty window.
//
// Launch shape:
//   max/avg: 1-D grid-stride loop, 256 threads a block, one thread per output element (neighbouring
//     threads take neighbouring output columns, so their windows overlap in L1).
//   global: one warp per (n, c) plane (8 planes per 256-thread block) when h * w <= 1024, else one
//     256-thread block per plane; shuffle reductions; planes grid-stride.
// Later versions: shared-memory input tiles for large overlapping windows; vectorized global pool
// reads.
#include "cuda/common.cuh"

namespace ev {
namespace {

struct PoolArgs {
  int total, h, w, out_h, out_w;
  int kh, kw, stride_h, stride_w, pad_t, pad_l, pad_b, pad_r, dil_h, dil_w;
  bool count_include_pad;
};

PoolArgs pool_args(const Pool2dShape& s) {
  PoolArgs a;
  a.total = cuda::to_int(s.n * s.c * s.out_h() * s.out_w(), "pool2d output elements");
  cuda::to_int(s.n * s.c * s.h * s.w, "pool2d input elements");
  a.h = cuda::to_int(s.h, "pool2d height");
  a.w = cuda::to_int(s.w, "pool2d width");
  a.out_h = cuda::to_int(s.out_h(), "pool2d output height");
  a.out_w = cuda::to_int(s.out_w(), "pool2d output width");
  a.kh = cuda::to_int(s.kh, "pool2d kernel height");
  a.kw = cuda::to_int(s.kw, "pool2d kernel width");
  a.stride_h = cuda::to_int(s.stride_h, "pool2d stride");
  a.stride_w = cuda::to_int(s.stride_w, "pool2d stride");
  a.pad_t = cuda::to_int(s.pad_t, "pool2d padding");
  a.pad_l = cuda::to_int(s.pad_l, "pool2d padding");
  a.pad_b = cuda::to_int(s.pad_b, "pool2d padding");
  a.pad_r = cuda::to_int(s.pad_r, "pool2d padding");
  a.dil_h = cuda::to_int(s.dil_h, "pool2d dilation");
  a.dil_w = cuda::to_int(s.dil_w, "pool2d dilation");
  // Window coordinates (o * stride - pad + k * dil) stay within these bounds in int.
  cuda::to_int(s.h + s.pad_t + s.pad_b + s.dil_h * s.kh + s.stride_h, "pool2d padded height");
  cuda::to_int(s.w + s.pad_l + s.pad_r + s.dil_w * s.kw + s.stride_w, "pool2d padded width");
  a.count_include_pad = s.count_include_pad;
  return a;
}

template <typename T>
__global__ void max_pool2d_kernel(PoolArgs a, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int ow = i % a.out_w;
    const int oh = (i / a.out_w) % a.out_h;
    const int plane = i / (a.out_w * a.out_h);
    const T* xp = x + plane * a.h * a.w;
    const int h0 = oh * a.stride_h - a.pad_t, w0 = ow * a.stride_w - a.pad_l;
    float m = -INFINITY;
    for (int r = 0; r < a.kh; ++r) {
      const int ih = h0 + r * a.dil_h;
      if (ih < 0 || ih >= a.h) continue;
      for (int s = 0; s < a.kw; ++s) {
        const int iw = w0 + s * a.dil_w;
        if (iw < 0 || iw >= a.w) continue;
        m = cuda::max_nan(m, cuda::ld(xp + ih * a.w + iw));
      }
    }
    cuda::st(y + i, m);
  }
}

template <typename T>
__global__ void avg_pool2d_kernel(PoolArgs a, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int ow = i % a.out_w;
    const int oh = (i / a.out_w) % a.out_h;
    const int plane = i / (a.out_w * a.out_h);
    const T* xp = x + plane * a.h * a.w;
    int h0 = oh * a.stride_h - a.pad_t, w0 = ow * a.stride_w - a.pad_l;
    int h1 = min(h0 + a.kh, a.h + a.pad_b), w1 = min(w0 + a.kw, a.w + a.pad_r);
    const int padded_count = (h1 - h0) * (w1 - w0);
    h0 = max(h0, 0);
    w0 = max(w0, 0);
    h1 = min(h1, a.h);
    w1 = min(w1, a.w);
    float sum = 0.f;
    for (int ih = h0; ih < h1; ++ih)
      for (int iw = w0; iw < w1; ++iw) sum += cuda::ld(xp + ih * a.w + iw);
    const int count = a.count_include_pad ? padded_count : max(h1 - h0, 0) * max(w1 - w0, 0);
    cuda::st(y + i, count > 0 ? sum / static_cast<float>(count) : 0.f);
  }
}

// PLANE_THREADS threads reduce one plane: 32 (a warp) or the whole block.
template <typename T, bool kMax, int PLANE_THREADS>
__global__ void global_pool_kernel(int planes, int hw, const T* __restrict__ x, T* __restrict__ y) {
  __shared__ float scratch[32];
  const int planes_per_block = blockDim.x / PLANE_THREADS;
  const int lane = threadIdx.x % PLANE_THREADS;
  // Every thread of a block runs the same number of iterations (block reductions need that).
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * planes_per_block; base < planes;
       base += static_cast<int64_t>(gridDim.x) * planes_per_block) {
    const int64_t p = base + threadIdx.x / PLANE_THREADS;
    float acc = kMax ? -INFINITY : 0.f;
    if (p < planes) {
      const T* xp = x + p * hw;
      for (int i = lane; i < hw; i += PLANE_THREADS) {
        const float v = cuda::ld(xp + i);
        acc = kMax ? cuda::max_nan(acc, v) : acc + v;
      }
    }
    if (PLANE_THREADS == 32)
      acc = kMax ? cuda::warp_max(acc) : cuda::warp_sum(acc);
    else
      acc = kMax ? cuda::block_max(acc, scratch) : cuda::block_sum(acc, scratch);
    if (p < planes && lane == 0) cuda::st(y + p, kMax ? acc : acc / static_cast<float>(hw));
  }
}

template <bool kMax>
void global_pool(const GlobalPoolShape& s, DType dt, const void* x, void* y, Stream stream) {
  cuda::to_int(s.n * s.c * s.h * s.w, "global pool elements");
  const int planes = cuda::to_int(s.n * s.c, "global pool planes");
  const int hw = cuda::to_int(s.h * s.w, "global pool h * w");
  if (planes <= 0 || hw <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, kMax ? "global_max_pool" : "global_avg_pool", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x);
    T* py = static_cast<T*>(y);
    if (hw <= 1024)
      global_pool_kernel<T, kMax, 32><<<cuda::blocks_for(planes, cuda::kBlock / 32), cuda::kBlock,
                                        0, st>>>(planes, hw, px, py);
    else
      global_pool_kernel<T, kMax, cuda::kBlock>
          <<<cuda::blocks_for(planes, 1), cuda::kBlock, 0, st>>>(planes, hw, px, py);
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void max_pool2d_cuda(const Pool2dShape& s, DType dt, const void* x, void* y, Stream stream) {
  const PoolArgs a = pool_args(s);
  if (a.total <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "max_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    max_pool2d_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
        a, static_cast<const T*>(x), static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

void avg_pool2d_cuda(const Pool2dShape& s, DType dt, const void* x, void* y, Stream stream) {
  const PoolArgs a = pool_args(s);
  if (a.total <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "avg_pool2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    avg_pool2d_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
        a, static_cast<const T*>(x), static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

void global_avg_pool_cuda(const GlobalPoolShape& s, DType dt, const void* x, void* y,
                          Stream stream) {
  global_pool<false>(s, dt, x, y, stream);
}

void global_max_pool_cuda(const GlobalPoolShape& s, DType dt, const void* x, void* y,
                          Stream stream) {
  global_pool<true>(s, dt, x, y, stream);
}

}  // namespace ev
