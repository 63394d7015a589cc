// resize: x [n, c, h, w] -> y [n, c, out_h, out_w], nearest or bilinear (no antialias), with the
// coordinate and nearest-rounding modes of ops.h.
//
// The arithmetic is resize_ref's, step for step:
//   bilinear: the ratio in / out (1 / scale; (in - 1) / (out - 1) for AlignCorners) is rounded to
//     float once on the host; the coordinate is (o + 0.5) * ratio - 0.5 or o * ratio, with the
//     multiply and add rounded separately (__fmul_rn / __fadd_rn: nvcc would contract them into an
//     FMA) and clamped to [0, in - 1].
//   nearest: the coordinate in double (again without contraction), snapped onto the rounding
//     boundary within 1e-9 of it, rounded by NearestMode, clamped in double before the integer
//     conversion. Double costs little here next to the memory traffic.
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per output element (ox
// fastest, so a warp reads one or two source rows).
// Later versions: per-axis tap tables (computed once, not per element) in shared memory, which also
// removes the double arithmetic from the hot loop on GPUs with slow FP64 (GeForce, Jetson).
#include "cuda/common.cuh"

namespace ev {
namespace {

struct ResizeArgs {
  int total, h, w, out_h, out_w;
  float ry, rx;          // bilinear ratios, rounded to float once as the reference does
  float scale_h, scale_w;  // the explicit scales (<= 0: none), for the nearest index in double
  bool bilinear;
  CoordMode coord;
  NearestMode nearest;
};

float source_ratio(int64_t in, int64_t out, float scale, CoordMode mode) {
  if (mode == CoordMode::AlignCorners)
    return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  return scale > 0.f ? static_cast<float>(1.0 / static_cast<double>(scale))
                     : static_cast<float>(in) / static_cast<float>(out);
}

// The unclamped bilinear source coordinate of output index o along one axis.
__device__ __forceinline__ float source_coord(int o, int out, float ratio, CoordMode mode) {
  switch (mode) {
    case CoordMode::PytorchHalfPixel:
      if (out == 1) return 0.f;
      [[fallthrough]];
    case CoordMode::HalfPixel:
      return __fadd_rn(__fmul_rn(static_cast<float>(o) + 0.5f, ratio), -0.5f);
    case CoordMode::AlignCorners:
    case CoordMode::Asymmetric:
      return __fmul_rn(static_cast<float>(o), ratio);
  }
  return 0.f;
}

// The nearest source index of output o along one axis: the coordinate in double, snapped onto a
// rounding boundary within 1e-9 of it so ties round as the exact formula says.
__device__ __forceinline__ int nearest_index(int o, int in, int out, float scale, CoordMode cm,
                                             NearestMode nm) {
  double x;
  const double ratio = scale > 0.f ? 1.0 / static_cast<double>(scale)
                                   : static_cast<double>(in) / static_cast<double>(out);
  switch (cm) {
    case CoordMode::AlignCorners:
      x = out > 1 ? __dmul_rn(static_cast<double>(o), static_cast<double>(in - 1)) /
                        static_cast<double>(out - 1)
                  : 0.0;
      break;
    case CoordMode::Asymmetric: x = __dmul_rn(static_cast<double>(o), ratio); break;
    case CoordMode::PytorchHalfPixel:
      if (out == 1) {
        x = 0.0;
        break;
      }
      [[fallthrough]];
    default: x = __dadd_rn(__dmul_rn(static_cast<double>(o) + 0.5, ratio), -0.5); break;
  }
  const bool round = nm == NearestMode::RoundPreferFloor || nm == NearestMode::RoundPreferCeil;
  double t = round ? x - 0.5 : x;  // the rounding boundaries are the integers of t
  const double k = rint(t);
  if (fabs(t - k) <= __dmul_rn(1e-9, fmax(1.0, fabs(t)))) t = k;
  double r = 0.0;
  switch (nm) {
    case NearestMode::RoundPreferFloor: r = ceil(t); break;
    case NearestMode::RoundPreferCeil: r = floor(t) + 1.0; break;
    case NearestMode::Floor: r = floor(t); break;
    case NearestMode::Ceil: r = ceil(t); break;
  }
  // Clamp before converting: a huge or NaN coordinate must not reach the integer conversion.
  r = fmin(fmax(r, 0.0), static_cast<double>(in - 1));
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
    float v;
    if (!a.bilinear) {
      const int iy = nearest_index(oy, a.h, a.out_h, a.scale_h, a.coord, a.nearest);
      const int ix = nearest_index(ox, a.w, a.out_w, a.scale_w, a.coord, a.nearest);
      v = cuda::ld(xp + iy * a.w + ix);
    } else {
      const Taps ty = linear_taps(source_coord(oy, a.out_h, a.ry, a.coord), a.h);
      const Taps tx = linear_taps(source_coord(ox, a.out_w, a.rx, a.coord), a.w);
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
  a.ry = source_ratio(s.h, s.out_h, s.scale_h, s.coord);
  a.rx = source_ratio(s.w, s.out_w, s.scale_w, s.coord);
  a.scale_h = s.scale_h;
  a.scale_w = s.scale_w;
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
