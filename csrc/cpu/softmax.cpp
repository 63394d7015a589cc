// softmax / log_softmax over the middle axis of an [outer, dim, inner] view, CPU reference and fast
// path. Both subtract the maximum first so exp never overflows, and log_softmax is formed as
// (x - max) - log(sum) rather than x - (max + log(sum)), which keeps its small values accurate next
// to large inputs.
//
// Fast path: inner == 1 (the last axis, e.g. class scores) works on contiguous rows; inner > 1 works
// on tiles of up to kTile inner positions at once, so every loop runs along contiguous memory and
// vectorises, with the per-position max and sum kept in small stack arrays (no allocation).
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

constexpr int64_t kTile = 256;

void softmax_row(const float* x, float* y, int64_t n, bool log) {
  float m8[8];
  for (int k = 0; k < 8; ++k) m8[k] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) m8[k] = x[i + k] > m8[k] ? x[i + k] : m8[k];
  float m = m8[0];
  for (int k = 1; k < 8; ++k) m = m8[k] > m ? m8[k] : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  float s = 0.f;
  if (log) {
    for (i = 0; i < n; ++i) s += std::exp(x[i] - m);
    const float ls = std::log(s);
    for (i = 0; i < n; ++i) y[i] = (x[i] - m) - ls;
  } else {
    for (i = 0; i < n; ++i) {
      const float e = std::exp(x[i] - m);
      y[i] = e;
      s += e;
    }
    const float r = 1.f / s;
    for (i = 0; i < n; ++i) y[i] *= r;
  }
}

// Positions [0, w) of one tile: x and y point at the tile's first element of row d == 0.
void softmax_tile(const float* x, float* y, int64_t dim, int64_t inner, int64_t w, bool log) {
  float m[kTile], s[kTile];
  for (int64_t i = 0; i < w; ++i) m[i] = x[i];
  for (int64_t d = 1; d < dim; ++d) {
    const float* xr = x + d * inner;
    for (int64_t i = 0; i < w; ++i) m[i] = xr[i] > m[i] ? xr[i] : m[i];
  }
  for (int64_t i = 0; i < w; ++i) s[i] = 0.f;
  if (log) {
    for (int64_t d = 0; d < dim; ++d) {
      const float* xr = x + d * inner;
      for (int64_t i = 0; i < w; ++i) s[i] += std::exp(xr[i] - m[i]);
    }
    for (int64_t i = 0; i < w; ++i) s[i] = std::log(s[i]);
    for (int64_t d = 0; d < dim; ++d) {
      const float* xr = x + d * inner;
      float* yr = y + d * inner;
      for (int64_t i = 0; i < w; ++i) yr[i] = (xr[i] - m[i]) - s[i];
    }
  } else {
    for (int64_t d = 0; d < dim; ++d) {
      const float* xr = x + d * inner;
      float* yr = y + d * inner;
      for (int64_t i = 0; i < w; ++i) {
        const float e = std::exp(xr[i] - m[i]);
        yr[i] = e;
        s[i] += e;
      }
    }
    for (int64_t i = 0; i < w; ++i) s[i] = 1.f / s[i];
    for (int64_t d = 0; d < dim; ++d) {
      float* yr = y + d * inner;
      for (int64_t i = 0; i < w; ++i) yr[i] *= s[i];
    }
  }
}

}  // namespace

void softmax_ref(const SoftmaxShape& s, const float* x, float* y) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      const float* xp = x + o * s.dim * s.inner + i;
      float* yp = y + o * s.dim * s.inner + i;
      float m = xp[0];
      for (int64_t d = 1; d < s.dim; ++d) m = std::max(m, xp[d * s.inner]);
      float sum = 0.f;
      for (int64_t d = 0; d < s.dim; ++d) sum += std::exp(xp[d * s.inner] - m);
      for (int64_t d = 0; d < s.dim; ++d) {
        const float v = xp[d * s.inner] - m;
        yp[d * s.inner] = s.log ? v - std::log(sum) : std::exp(v) / sum;
      }
    }
  }
}

void softmax_cpu(const SoftmaxShape& s, const float* x, float* y) {
  const int64_t total = s.outer * s.dim * s.inner;
  if (total <= 0) return;
  const bool par = total >= cpu::kMinParallel;
  if (s.inner == 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t o = 0; o < s.outer; ++o) softmax_row(x + o * s.dim, y + o * s.dim, s.dim, s.log);
    return;
  }
  const int64_t tiles = (s.inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < s.outer * tiles; ++u) {
    const int64_t o = u / tiles, i0 = (u % tiles) * kTile;
    const int64_t off = o * s.dim * s.inner + i0;
    softmax_tile(x + off, y + off, s.dim, s.inner, std::min(kTile, s.inner - i0), s.log);
  }
}

}  // namespace ev
