// reduce (mean, sum, max, min over the middle axis of [outer, dim, inner]) on the CPU: the
// reference and the fast path.
//
// The reference sums in double. The fast path has two layouts:
// - inner == 1 (the reduced axis is innermost: mean over H * W, over the last axis): OpenMP over
//   rows, each reduced with four independent 8-lane vector accumulators (GCC vector extensions,
//   portable to NEON), summed into a double at the end, like global_avg_pool_cpu;
// - inner > 1 (e.g. mean over channels of [n, c, h * w]): OpenMP over (outer, tile of up to kTile
//   inner positions); each of the dim rows of a tile is added into a stack accumulator (double for
//   sums, so a long channel axis keeps the reference's accuracy), every loop contiguous.
// Max and min propagate NaN as torch.amax / numpy.max do.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

constexpr int64_t kTile = 512;
constexpr float kInf = std::numeric_limits<float>::infinity();

typedef float v8f __attribute__((vector_size(32)));
// 8 floats at any float-aligned address: a load through it is one unaligned vector load.
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
inline v8f load8(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }

// NaN-propagating max / min: once the running value is NaN it stays NaN.
inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }
inline float min_nan(float m, float v) { return (v < m || v != v) ? v : m; }

template <ReduceOp OP>
float reduce_row(const float* x, int64_t n) {
  int64_t i = 0;
  if (OP == ReduceOp::Mean || OP == ReduceOp::Sum) {
    v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (; i + 32 <= n; i += 32) {
      a0 += load8(x + i);
      a1 += load8(x + i + 8);
      a2 += load8(x + i + 16);
      a3 += load8(x + i + 24);
    }
    for (; i + 8 <= n; i += 8) a0 += load8(x + i);
    const v8f a = (a0 + a1) + (a2 + a3);
    double sum = 0.0;
    for (int l = 0; l < 8; ++l) sum += a[l];
    for (; i < n; ++i) sum += x[i];
    return static_cast<float>(OP == ReduceOp::Mean ? sum / n : sum);
  }
  constexpr bool kMax = OP == ReduceOp::Max;
  v8f m0 = v8f{} + (kMax ? -kInf : kInf), m1 = m0;
  for (; i + 16 <= n; i += 16) {
    const v8f v0 = load8(x + i), v1 = load8(x + i + 8);
    if (kMax) {
      m0 = ((v0 > m0) | (v0 != v0)) ? v0 : m0;
      m1 = ((v1 > m1) | (v1 != v1)) ? v1 : m1;
    } else {
      m0 = ((v0 < m0) | (v0 != v0)) ? v0 : m0;
      m1 = ((v1 < m1) | (v1 != v1)) ? v1 : m1;
    }
  }
  float m = kMax ? -kInf : kInf;
  for (int l = 0; l < 8; ++l)
    m = kMax ? max_nan(max_nan(m, m0[l]), m1[l]) : min_nan(min_nan(m, m0[l]), m1[l]);
  for (; i < n; ++i) m = kMax ? max_nan(m, x[i]) : min_nan(m, x[i]);
  return m;
}

// Positions [0, w) of one tile: x points at the tile's first element of row d == 0.
template <ReduceOp OP>
void reduce_tile(const float* x, float* y, int64_t dim, int64_t inner, int64_t w) {
  if (OP == ReduceOp::Mean || OP == ReduceOp::Sum) {
    double acc[kTile];
    for (int64_t i = 0; i < w; ++i) acc[i] = 0.0;
    for (int64_t d = 0; d < dim; ++d) {
      const float* xr = x + d * inner;
      for (int64_t i = 0; i < w; ++i) acc[i] += xr[i];
    }
    const double f = OP == ReduceOp::Mean ? 1.0 / static_cast<double>(dim) : 1.0;
    for (int64_t i = 0; i < w; ++i) y[i] = static_cast<float>(acc[i] * f);
    return;
  }
  for (int64_t i = 0; i < w; ++i) y[i] = x[i];
  for (int64_t d = 1; d < dim; ++d) {
    const float* xr = x + d * inner;
    if (OP == ReduceOp::Max)
      for (int64_t i = 0; i < w; ++i) y[i] = max_nan(y[i], xr[i]);
    else
      for (int64_t i = 0; i < w; ++i) y[i] = min_nan(y[i], xr[i]);
  }
}

template <ReduceOp OP>
void reduce_fast(const ReduceShape& s, const float* x, float* y) {
  const bool par = s.outer * s.dim * s.inner >= cpu::kMinParallel;
  if (s.inner == 1) {
#pragma omp parallel for schedule(static) if (par)
    for (int64_t o = 0; o < s.outer; ++o) y[o] = reduce_row<OP>(x + o * s.dim, s.dim);
    return;
  }
  const int64_t tiles = (s.inner + kTile - 1) / kTile;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t u = 0; u < s.outer * tiles; ++u) {
    const int64_t o = u / tiles, i0 = (u % tiles) * kTile;
    reduce_tile<OP>(x + o * s.dim * s.inner + i0, y + o * s.inner + i0, s.dim, s.inner,
                    std::min(kTile, s.inner - i0));
  }
}

}  // namespace

void reduce_ref(const ReduceShape& s, const float* x, float* y) {
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const float* xp = x + o * s.dim * s.inner + i;
      double sum = 0.0;
      float m = xp[0];
      for (int64_t d = 0; d < s.dim; ++d) {
        const float v = xp[d * s.inner];
        sum += v;
        if (s.op == ReduceOp::Max) m = max_nan(m, v);
        if (s.op == ReduceOp::Min) m = min_nan(m, v);
      }
      float r = m;
      if (s.op == ReduceOp::Sum) r = static_cast<float>(sum);
      if (s.op == ReduceOp::Mean) r = static_cast<float>(sum / s.dim);
      y[o * s.inner + i] = r;
    }
}

void reduce_cpu(const ReduceShape& s, const float* x, float* y) {
  if (s.outer <= 0 || s.dim <= 0 || s.inner <= 0) return;
  switch (s.op) {
    case ReduceOp::Mean: return reduce_fast<ReduceOp::Mean>(s, x, y);
    case ReduceOp::Sum: return reduce_fast<ReduceOp::Sum>(s, x, y);
    case ReduceOp::Max: return reduce_fast<ReduceOp::Max>(s, x, y);
    case ReduceOp::Min: return reduce_fast<ReduceOp::Min>(s, x, y);
  }
}

}  // namespace ev
