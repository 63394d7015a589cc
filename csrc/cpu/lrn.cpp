// lrn (ONNX LocalResponseNormalization across channels) on the CPU: the reference and the fast path.
//
// Fast path: OpenMP over (image, tile of up to kTile spatial positions). Within a tile, each output
// channel sums the squares of its window's channel rows into a small stack array (loops along the
// tile's contiguous positions, vectorised); the window is read again for each channel, which costs
// `size` multiply-adds per output: cheap for the sizes networks use (3 to 5), and it gives NaN and
// inf exactly the reference's behaviour, which a running sum that subtracts the leaving channel
// would not. beta = 0.75 (the ONNX default) uses 1 / (sqrt(t) * sqrt(sqrt(t))), about twice as
// fast as pow. (The final loops stay scalar: without -fno-math-errno GCC keeps sqrt and pow calls.)
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

constexpr int64_t kTile = 256;

// The window of channel c is [c - before, c + after], clipped to [0, channels).
inline int64_t before(int64_t size) { return (size - 1) / 2; }
inline int64_t after(int64_t size) { return size / 2; }

template <bool Beta075>
void lrn_tile(const LrnShape& s, const float* x, float* y, int64_t w) {
  float t[kTile];
  const int64_t lo = before(s.size), hi = after(s.size);
  const float scale = s.alpha / static_cast<float>(s.size);
  for (int64_t c = 0; c < s.c; ++c) {
    for (int64_t i = 0; i < w; ++i) t[i] = 0.f;
    for (int64_t k = std::max<int64_t>(0, c - lo); k <= std::min(s.c - 1, c + hi); ++k) {
      const float* xr = x + k * s.hw;
      for (int64_t i = 0; i < w; ++i) t[i] += xr[i] * xr[i];
    }
    const float* xr = x + c * s.hw;
    float* yr = y + c * s.hw;
    if (Beta075) {
      for (int64_t i = 0; i < w; ++i) {
        const float r = std::sqrt(s.bias + scale * t[i]);
        yr[i] = xr[i] / (r * std::sqrt(r));
      }
    } else {
      for (int64_t i = 0; i < w; ++i) yr[i] = xr[i] * std::pow(s.bias + scale * t[i], -s.beta);
    }
  }
}

}  // namespace

void lrn_ref(const LrnShape& s, const float* x, float* y) {
  const int64_t lo = before(s.size), hi = after(s.size);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.hw; ++i) {
        double sum = 0.0;
        for (int64_t k = std::max<int64_t>(0, c - lo); k <= std::min(s.c - 1, c + hi); ++k) {
          const double v = x[(n * s.c + k) * s.hw + i];
          sum += v * v;
        }
        const int64_t o = (n * s.c + c) * s.hw + i;
        y[o] = static_cast<float>(x[o] / std::pow(s.bias + s.alpha / s.size * sum, double(s.beta)));
      }
}

void lrn_cpu(const LrnShape& s, const float* x, float* y) {
  const int64_t tiles = (s.hw + kTile - 1) / kTile;
  const int64_t items = s.n * tiles;
  const bool b075 = s.beta == 0.75f;
#pragma omp parallel for schedule(static) if (s.n * s.c * s.hw >= cpu::kMinParallel)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / tiles, i0 = (it % tiles) * kTile;
    const int64_t off = n * s.c * s.hw + i0, w = std::min(kTile, s.hw - i0);
    if (b075) lrn_tile<true>(s, x + off, y + off, w);
    else lrn_tile<false>(s, x + off, y + off, w);
  }
}

}  // namespace ev
