// resize: x [n, c, h, w] -> y [n, c, out_h, out_w], nearest or bilinear (no antialias), with the
// coordinate and nearest-rounding modes of ops.h.
//
// The arithmetic is resize_ref's, step for step: the ratio in / out (or 1 / scale) is rounded to
// float once on the host, the source coordinate is (o + 0.5) * ratio - 0.5 with the multiply and
// add rounded separately (__fmul_rn / __fadd_rn, so nvcc cannot contract them into an FMA and move
// a nearest-rounding tie), AlignCorners divides o * (in - 1) by out - 1, and the coordinate is
// clamped in float before any integer conversion.
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per output element (ox
// fastest, so a warp reads one or two source rows).
// Later versions: per-column tap tables in shared memory; one thread per output column walking
// all planes so the taps are computed once.
#include "cuda/common.cuh"

namespace ev {
namespace {

struct ResizeArgs {
  int total, h, w, out_h, out_w;
  float ry, rx;
  bool bilinear;
  CoordMode coord;
  NearestMode nearest;
};

float source_ratio(int64_t in, int64_t out, float scale) {
  return scale > 0.f ? static_cast<float>(1.0 / static_cast<double>(scale))
                     : static_cast<float>(in) / static_cast<float>(out);
}

__device__ __forceinline__ float source_coord(int o, int in, int out, float ratio, CoordMode mode) {
  switch (mode) {
    case CoordMode::PytorchHalfPixel:
      if (out == 1) return 0.f;
      [[fallthrough]];
    case CoordMode::HalfPixel:
      return __fadd_rn(__fmul_rn(static_cast<float>(o) + 0.5f, ratio), -0.5f);
    case CoordMode::AlignCorners:
      return out == 1 ? 0.f
                      : static_cast<float>(static_cast<long long>(o) * (in - 1)) /
                            static_cast<float>(out - 1);
    case CoordMode::Asymmetric:
      return __fmul_rn(static_cast<float>(o), ratio);
  }
  return 0.f;
}

__device__ __forceinline__ int nearest_index(float src, int in, NearestMode mode) {
  float r = src;
  switch (mode) {
    case NearestMode::RoundPreferFloor: r = ceilf(src - 0.5f); break;
    case NearestMode::RoundPreferCeil: r = floorf(src + 0.5f); break;
    case NearestMode::Floor: r = floorf(src); break;
    case NearestMode::Ceil: r = ceilf(src); break;
  }
  // Clamp in float first: a huge or NaN coordinate must not reach the integer conversion.
  r = fminf(fmaxf(r, 0.f), static_cast<float>(in - 1));
  return static_cast<int>(r);
}

struct Taps {
  int i0, i1;
  float w0, w1;
};
__device__ __forceinline__ Taps linear_taps(float src, int in) {
  src = fminf(fmaxf(src, 0.f), static_cast<float>(in - 1));
  const int i0 = static_cast<int>(src);
  const float l = src - static_cast<float>(i0);
  return {i0, min(i0 + 1, in - 1), 1.f - l, l};
}

template <typename T>
__global__ void resize_kernel(ResizeArgs a, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int ox = i % a.out_w;
    const int oy = (i / a.out_w) % a.out_h;
    const int plane = i / (a.out_w * a.out_h);
    const T* xp = x + plane * a.h * a.w;
    const float sy = source_coord(oy, a.h, a.out_h, a.ry, a.coord);
    const float sx = source_coord(ox, a.w, a.out_w, a.rx, a.coord);
    float v;
    if (!a.bilinear) {
      v = cuda::ld(xp + nearest_index(sy, a.h, a.nearest) * a.w + nearest_index(sx, a.w, a.nearest));
    } else {
      const Taps ty = linear_taps(sy, a.h), tx = linear_taps(sx, a.w);
      const T* r0 = xp + ty.i0 * a.w;
      const T* r1 = xp + ty.i1 * a.w;
      v = ty.w0 * (tx.w0 * cuda::ld(r0 + tx.i0) + tx.w1 * cuda::ld(r0 + tx.i1)) +
          ty.w1 * (tx.w0 * cuda::ld(r1 + tx.i0) + tx.w1 * cuda::ld(r1 + tx.i1));
    }
    cuda::st(y + i, v);
  }
}

}  // namespace

void resize_cuda(const ResizeShape& s, DType dt, const void* x, void* y, Stream stream) {
  ResizeArgs a;
  a.total = cuda::to_int(s.n * s.c * s.out_h * s.out_w, "resize output elements");
  cuda::to_int(s.n * s.c * s.h * s.w, "resize input elements");
  if (a.total <= 0) return;
  a.h = static_cast<int>(s.h);
  a.w = static_cast<int>(s.w);
  a.out_h = static_cast<int>(s.out_h);
  a.out_w = static_cast<int>(s.out_w);
  a.ry = source_ratio(s.h, s.out_h, s.scale_h);
  a.rx = source_ratio(s.w, s.out_w, s.scale_w);
  a.bilinear = s.mode == ResizeMode::Bilinear;
  a.coord = s.coord;
  a.nearest = s.nearest;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "resize", [&](auto tag) {
    using T = typename decltype(tag)::type;
    resize_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
        a, static_cast<const T*>(x), static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
