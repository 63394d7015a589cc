// resize on the CPU (nearest and bilinear, no antialias): the reference and the fast path.
//
// Bilinear follows PyTorch's float arithmetic, so F.interpolate is matched to the last bits: the
// ratio in / out (or 1 / scale when a scale is given; (in - 1) / (out - 1) for AlignCorners) is
// rounded to float once and multiplied, (o + 0.5) * ratio - 0.5, where ONNX writes
// (o + 0.5) / scale - 0.5.
// Nearest is exact at ties: the coordinate is computed in double and snapped onto a rounding
// boundary (an integer for floor/ceil, a half for the round modes) within 1e-9 of it. Float
// arithmetic lands an ulp either side of such a tie (integer scale factors hit them constantly,
// and whether the compiler contracts a * b - c into an FMA changes the side), so torch and
// onnxruntime each pick the wrong neighbour at some ties; edgevision picks the one the exact
// formula gives.
// Fast path: each thread builds the per-column source index and weight tables for a chunk of
// output columns once (on its stack, no allocation), then walks whole output rows of every plane.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ops.h"

namespace ev {

namespace {

float source_ratio(int64_t in, int64_t out, float scale, CoordMode mode) {
  if (mode == CoordMode::AlignCorners)
    return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.f;
  return scale > 0.f ? static_cast<float>(1.0 / static_cast<double>(scale))
                     : static_cast<float>(in) / static_cast<float>(out);
}

// The unclamped source coordinate of output index o along one axis.
float source_coord(int64_t o, int64_t out, float ratio, CoordMode mode) {
  switch (mode) {
    case CoordMode::PytorchHalfPixel:
      if (out == 1) return 0.f;
      [[fallthrough]];
    case CoordMode::HalfPixel:
      return (static_cast<float>(o) + 0.5f) * ratio - 0.5f;
    case CoordMode::AlignCorners:
    case CoordMode::Asymmetric:
      return static_cast<float>(o) * ratio;
  }
  return 0.f;
}

// The source index of output o along one axis (in -> out pixels, explicit scale when > 0).
int64_t nearest_index(int64_t o, int64_t in, int64_t out, float scale, CoordMode cm,
                      NearestMode nm) {
  double x;
  const double ratio = scale > 0.f ? 1.0 / static_cast<double>(scale)
                                   : static_cast<double>(in) / static_cast<double>(out);
  switch (cm) {
    case CoordMode::AlignCorners:
      x = out > 1 ? static_cast<double>(o) * static_cast<double>(in - 1) /
                        static_cast<double>(out - 1)
                  : 0.0;
      break;
    case CoordMode::Asymmetric: x = static_cast<double>(o) * ratio; break;
    case CoordMode::PytorchHalfPixel:
      if (out == 1) {
        x = 0.0;
        break;
      }
      [[fallthrough]];
    default: x = (static_cast<double>(o) + 0.5) * ratio - 0.5; break;
  }
  const bool round = nm == NearestMode::RoundPreferFloor || nm == NearestMode::RoundPreferCeil;
  double t = round ? x - 0.5 : x;  // the rounding boundaries are the integers of t
  const double k = std::nearbyint(t);
  if (std::fabs(t - k) <= 1e-9 * std::fmax(1.0, std::fabs(t))) t = k;
  double r = 0.0;
  switch (nm) {
    case NearestMode::RoundPreferFloor: r = std::ceil(t); break;
    case NearestMode::RoundPreferCeil: r = std::floor(t) + 1.0; break;
    case NearestMode::Floor: r = std::floor(t); break;
    case NearestMode::Ceil: r = std::ceil(t); break;
  }
  // Clamp before converting: a huge or NaN coordinate must not reach the integer conversion.
  r = std::fmin(std::fmax(r, 0.0), static_cast<double>(in - 1));
  return static_cast<int64_t>(r);
}

struct Linear {
  int64_t i0, i1;
  float w0, w1;
};
Linear linear_taps(float src, int64_t in) {
  src = std::fmin(std::fmax(src, 0.f), static_cast<float>(in - 1));
  const int64_t i0 = static_cast<int64_t>(src);
  const float l = src - static_cast<float>(i0);
  return {i0, std::min(i0 + 1, in - 1), 1.f - l, l};
}

}  // namespace

void resize_ref(const ResizeShape& s, const float* x, float* y) {
  const float ry = source_ratio(s.h, s.out_h, s.scale_h, s.coord);
  const float rx = source_ratio(s.w, s.out_w, s.scale_w, s.coord);
  for (int64_t p = 0; p < s.n * s.c; ++p) {
    const float* xp = x + p * s.h * s.w;
    for (int64_t oy = 0; oy < s.out_h; ++oy)
      for (int64_t ox = 0; ox < s.out_w; ++ox) {
        float v;
        if (s.mode == ResizeMode::Nearest) {
          v = xp[nearest_index(oy, s.h, s.out_h, s.scale_h, s.coord, s.nearest) * s.w +
                 nearest_index(ox, s.w, s.out_w, s.scale_w, s.coord, s.nearest)];
        } else {
          const Linear ty = linear_taps(source_coord(oy, s.out_h, ry, s.coord), s.h);
          const Linear tx = linear_taps(source_coord(ox, s.out_w, rx, s.coord), s.w);
          const float* r0 = xp + ty.i0 * s.w;
          const float* r1 = xp + ty.i1 * s.w;
          v = ty.w0 * (tx.w0 * r0[tx.i0] + tx.w1 * r0[tx.i1]) +
              ty.w1 * (tx.w0 * r1[tx.i0] + tx.w1 * r1[tx.i1]);
        }
        y[(p * s.out_h + oy) * s.out_w + ox] = v;
      }
  }
}

void resize_cpu(const ResizeShape& s, const float* x, float* y) {
  constexpr int64_t kChunk = 512;  // output columns per table fill: 6 KiB of stack per thread
  const float ry = source_ratio(s.h, s.out_h, s.scale_h, s.coord);
  const float rx = source_ratio(s.w, s.out_w, s.scale_w, s.coord);
  const int64_t rows = s.n * s.c * s.out_h;
  const bool nearest = s.mode == ResizeMode::Nearest;
  // Small outputs run on one thread: waking a team costs more than the work.
#pragma omp parallel if (rows * s.out_w > (int64_t{1} << 14))
  {
    int32_t ix0[kChunk], ix1[kChunk];
    float wx0[kChunk], wx1[kChunk];
    for (int64_t c0 = 0; c0 < s.out_w; c0 += kChunk) {
      const int64_t cw = std::min(kChunk, s.out_w - c0);
      for (int64_t i = 0; i < cw; ++i) {
        if (nearest) {
          ix0[i] = static_cast<int32_t>(
              nearest_index(c0 + i, s.w, s.out_w, s.scale_w, s.coord, s.nearest));
        } else {
          const Linear t = linear_taps(source_coord(c0 + i, s.out_w, rx, s.coord), s.w);
          ix0[i] = static_cast<int32_t>(t.i0);
          ix1[i] = static_cast<int32_t>(t.i1);
          wx0[i] = t.w0;
          wx1[i] = t.w1;
        }
      }
#pragma omp for schedule(static) nowait
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t p = row / s.out_h, oy = row % s.out_h;
        const float* xp = x + p * s.h * s.w;
        float* yr = y + row * s.out_w + c0;
        if (nearest) {
          const float* xr = xp + nearest_index(oy, s.h, s.out_h, s.scale_h, s.coord, s.nearest) * s.w;
          for (int64_t i = 0; i < cw; ++i) yr[i] = xr[ix0[i]];
        } else {
          const Linear ty = linear_taps(source_coord(oy, s.out_h, ry, s.coord), s.h);
          const float* r0 = xp + ty.i0 * s.w;
          const float* r1 = xp + ty.i1 * s.w;
          const float h0 = ty.w0, h1 = ty.w1;
          for (int64_t i = 0; i < cw; ++i)
            yr[i] = h0 * (wx0[i] * r0[ix0[i]] + wx1[i] * r0[ix1[i]]) +
                    h1 * (wx0[i] * r1[ix0[i]] + wx1[i] * r1[ix1[i]]);
        }
      }
    }
  }
}

}  // namespace ev
