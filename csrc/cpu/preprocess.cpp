// Frame preprocessing (uint8 HWC camera frame -> normalised float CHW: resize, centre crop, colour
// swap, scale, mean, std) and image postprocessing (float CHW -> uint8 HWC), CPU reference and fast
// paths.
//
// preprocess never materialises the resized image: each output pixel maps straight to its source
// coordinate in the frame, crop offset included. The fast path tabulates the horizontal taps
// (offsets and weights) for a tile of output columns on each thread's stack and the vertical taps
// once per row, so the inner loop is table lookups and multiply-adds with no allocation.
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

// Bilinear half-pixel taps of resized coordinate r along an axis of `in` source pixels resized to
// `eff`: i0, i1 and the weight of i1. The float arithmetic follows PyTorch's upsample_bilinear2d
// (scale = in / out in float, source = scale * (r + 0.5) - 0.5 clamped to [0, in - 1]). With
// eff == in the coordinate is exactly r, so the no-resize case needs no branch.
struct Taps {
  int64_t i0, i1;
  float w1;
};
inline Taps linear_taps(int64_t r, int64_t in, int64_t eff) {
  const float scale = static_cast<float>(in) / static_cast<float>(eff);
  float f = scale * (static_cast<float>(r) + 0.5f) - 0.5f;
  if (f < 0.f) f = 0.f;
  const int64_t i0 = static_cast<int64_t>(f);
  if (i0 >= in - 1) return {in - 1, in - 1, 0.f};
  return {i0, i0 + 1, f - static_cast<float>(i0)};
}

// Nearest: the source pixel whose area contains the output pixel's centre, floor((r + 0.5) * in /
// eff), PyTorch's 'nearest-exact' bit for bit.
inline int64_t nearest_tap(int64_t r, int64_t in, int64_t eff) {
  const float scale = static_cast<float>(in) / static_cast<float>(eff);
  const int64_t i = static_cast<int64_t>(std::floor((static_cast<float>(r) + 0.5f) * scale));
  return std::min(i, in - 1);
}

constexpr int64_t kColTile = 512;

}  // namespace

void preprocess_ref(const PreprocessShape& s, const uint8_t* src, float* dst) {
  const int64_t eh = s.eff_h(), ew = s.eff_w(), top = s.crop_top(), left = s.crop_left();
  for (int c = 0; c < 3; ++c) {
    const int sc = s.swap_rb ? 2 - c : c;
    for (int64_t oy = 0; oy < s.out_h; ++oy) {
      for (int64_t ox = 0; ox < s.out_w; ++ox) {
        float v;
        if (s.interp == Interp::Bilinear) {
          const Taps ty = linear_taps(oy + top, s.in_h, eh), tx = linear_taps(ox + left, s.in_w, ew);
          auto px = [&](int64_t y, int64_t x) {
            return static_cast<float>(src[y * s.row_bytes + x * 3 + sc]);
          };
          const float h0 = (1.f - tx.w1) * px(ty.i0, tx.i0) + tx.w1 * px(ty.i0, tx.i1);
          const float h1 = (1.f - tx.w1) * px(ty.i1, tx.i0) + tx.w1 * px(ty.i1, tx.i1);
          v = (1.f - ty.w1) * h0 + ty.w1 * h1;
        } else {
          const int64_t y = nearest_tap(oy + top, s.in_h, eh), x = nearest_tap(ox + left, s.in_w, ew);
          v = static_cast<float>(src[y * s.row_bytes + x * 3 + sc]);
        }
        dst[(c * s.out_h + oy) * s.out_w + ox] = (v * s.scale - s.mean[c]) / s.std[c];
      }
    }
  }
}

void preprocess_cpu(const PreprocessShape& s, const uint8_t* src, float* dst) {
  const int64_t eh = s.eff_h(), ew = s.eff_w(), top = s.crop_top(), left = s.crop_left();
  const int64_t plane = s.out_h * s.out_w;
  if (plane <= 0) return;
  // (v * scale - mean) / std as one multiply-add per output channel.
  float mul[3], add[3];
  int sc[3];
  for (int c = 0; c < 3; ++c) {
    mul[c] = s.scale / s.std[c];
    add[c] = -s.mean[c] / s.std[c];
    sc[c] = s.swap_rb ? 2 - c : c;
  }
  const bool bilinear = s.interp == Interp::Bilinear;
#pragma omp parallel if (3 * plane >= cpu::kMinParallel)
  {
    int64_t x0[kColTile], x1[kColTile];  // byte offsets of a pixel within a source row
    float w0[kColTile], w1[kColTile];
    for (int64_t t0 = 0; t0 < s.out_w; t0 += kColTile) {
      const int64_t tw = std::min(kColTile, s.out_w - t0);
      for (int64_t i = 0; i < tw; ++i) {
        if (bilinear) {
          const Taps t = linear_taps(t0 + i + left, s.in_w, ew);
          x0[i] = t.i0 * 3;
          x1[i] = t.i1 * 3;
          w0[i] = 1.f - t.w1;
          w1[i] = t.w1;
        } else {
          x0[i] = nearest_tap(t0 + i + left, s.in_w, ew) * 3;
        }
      }
#pragma omp for schedule(static) nowait
      for (int64_t oy = 0; oy < s.out_h; ++oy) {
        for (int c = 0; c < 3; ++c) {
          float* out = dst + c * plane + oy * s.out_w + t0;
          const float m = mul[c], a = add[c];
          if (bilinear) {
            const Taps ty = linear_taps(oy + top, s.in_h, eh);
            const uint8_t* r0 = src + ty.i0 * s.row_bytes + sc[c];
            const uint8_t* r1 = src + ty.i1 * s.row_bytes + sc[c];
            const float v0 = 1.f - ty.w1, v1 = ty.w1;
            for (int64_t i = 0; i < tw; ++i) {
              const float h0 = w0[i] * r0[x0[i]] + w1[i] * r0[x1[i]];
              const float h1 = w0[i] * r1[x0[i]] + w1[i] * r1[x1[i]];
              out[i] = (v0 * h0 + v1 * h1) * m + a;
            }
          } else {
            const uint8_t* r = src + nearest_tap(oy + top, s.in_h, eh) * s.row_bytes + sc[c];
            for (int64_t i = 0; i < tw; ++i) out[i] = r[x0[i]] * m + a;
          }
        }
      }
    }
  }
}

// postprocess_image is evaluated in double: the product of two floats is exact in double, so the
// result does not depend on whether the compiler contracts a multiply-add into an FMA, and the
// output is reproducible bit for bit (numpy float64 gives the same bytes).
namespace {

inline uint8_t to_u8(float v, double std_, double mean, double scale) {
  double d = (static_cast<double>(v) * std_ + mean) * scale;
  d = d > 0.0 ? d : 0.0;  // also maps NaN to 0
  d = d < 255.0 ? d : 255.0;
  // Adding and subtracting 2^52 rounds half to even in the default rounding mode, with plain
  // arithmetic that vectorises everywhere (nearbyint is a library call without SSE4.1).
  d = (d + 4503599627370496.0) - 4503599627370496.0;
  return static_cast<uint8_t>(static_cast<int>(d));
}

}  // namespace

void postprocess_image_ref(const PostprocessShape& s, const float* src, uint8_t* dst) {
  for (int64_t y = 0; y < s.h; ++y)
    for (int64_t x = 0; x < s.w; ++x)
      for (int64_t j = 0; j < s.c; ++j) {
        const int64_t c = (s.swap_rb && s.c == 3) ? 2 - j : j;  // source (model) channel
        dst[(y * s.w + x) * s.c + j] =
            to_u8(src[(c * s.h + y) * s.w + x], s.std[c], s.mean[c], s.scale);
      }
}

void postprocess_image_cpu(const PostprocessShape& s, const float* src, uint8_t* dst) {
  const int64_t plane = s.h * s.w;
  if (plane <= 0) return;
  const double scale = s.scale;
  if (s.c == 1) {
    const double sd = s.std[0], mn = s.mean[0];
#pragma omp parallel for schedule(static) if (plane >= cpu::kMinParallel)
    for (int64_t y = 0; y < s.h; ++y) {
      const float* in = src + y * s.w;
      uint8_t* out = dst + y * s.w;
      for (int64_t x = 0; x < s.w; ++x) out[x] = to_u8(in[x], sd, mn, scale);
    }
    return;
  }
  // Output channel j reads model channel c[j].
  int c[3];
  for (int j = 0; j < 3; ++j) c[j] = s.swap_rb ? 2 - j : j;
  const double sd0 = s.std[c[0]], sd1 = s.std[c[1]], sd2 = s.std[c[2]];
  const double mn0 = s.mean[c[0]], mn1 = s.mean[c[1]], mn2 = s.mean[c[2]];
#pragma omp parallel for schedule(static) if (3 * plane >= cpu::kMinParallel)
  for (int64_t y = 0; y < s.h; ++y) {
    const float* p0 = src + c[0] * plane + y * s.w;
    const float* p1 = src + c[1] * plane + y * s.w;
    const float* p2 = src + c[2] * plane + y * s.w;
    uint8_t* out = dst + y * s.w * 3;
    for (int64_t x = 0; x < s.w; ++x) {
      out[3 * x + 0] = to_u8(p0[x], sd0, mn0, scale);
      out[3 * x + 1] = to_u8(p1[x], sd1, mn1, scale);
      out[3 * x + 2] = to_u8(p2[x], sd2, mn2, scale);
    }
  }
}

}  // namespace ev
