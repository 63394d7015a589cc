// strided_copy (Transpose, Slice, Split, Expand) on the CPU: the reference and the fast path.
//
// Fast path: the copy is first coalesced (StridedCopyShape::coalesced), so the common graph cases
// reach it as a few long rows. Then either
// - rows: the innermost dim is read with stride 1 (memcpy: channel shuffle, channel slices, Split),
//   0 (a fill: Expand) or any other stride (a gather: Slice with steps); the output is walked
//   row by row with an odometer over the outer dims, the flat range split evenly over the threads;
// - tiles: the innermost dim has a large stride but another dim reads x contiguously (a real
//   transpose such as NCHW -> NHWC). Those two dims are copied as a 2-D transpose in square tiles,
//   so both the reads and the writes of a tile stay within a few cache lines per row.
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

// Tile edge of the transpose path: 32 x 32 floats (4 KiB) of source and of destination fit in L1.
constexpr int64_t kTile = 32;

inline void copy_row(const float* x, int64_t stride, float* y, int64_t n) {
  if (stride == 1) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  } else if (stride == 0) {
    const float v = *x;
    for (int64_t i = 0; i < n; ++i) y[i] = v;
  } else if (stride == -1) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[-i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i * stride];
  }
}

// Output elements [begin, end) of the coalesced copy c, row by row.
void copy_rows(const StridedCopyShape& c, const float* x, float* y, int64_t begin, int64_t end) {
  if (begin >= end) return;
  const int last = c.ndim - 1;
  const int64_t inner = c.shape[last], st = c.x_strides[last];
  int64_t idx[kMaxDims] = {0};
  int64_t row = begin / inner, j = begin % inner;
  int64_t xo = c.x_offset;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = row % c.shape[d];
    row /= c.shape[d];
    xo += idx[d] * c.x_strides[d];
  }
  int64_t pos = begin;
  while (pos < end) {
    const int64_t len = std::min(inner - j, end - pos);
    copy_row(x + xo + j * st, st, y + pos, len);
    pos += len;
    j = 0;
    for (int d = last - 1; d >= 0; --d) {  // odometer step over the outer dims
      xo += c.x_strides[d];
      if (++idx[d] < c.shape[d]) break;
      xo -= idx[d] * c.x_strides[d];
      idx[d] = 0;
    }
  }
}

// The transpose path: dim k of the coalesced copy reads x with stride 1, the last dim with stride
// c.x_strides[last]. Work items are (outer index over the other dims, tile row, tile column).
void copy_tiles(const StridedCopyShape& c, int k, const float* x, float* y) {
  const int last = c.ndim - 1;
  int64_t ystride[kMaxDims];
  int64_t acc = 1;
  for (int d = last; d >= 0; --d) ystride[d] = acc, acc *= c.shape[d];
  const int64_t rows = c.shape[k], cols = c.shape[last], xs = c.x_strides[last];
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  const int64_t outer = acc / (rows * cols);
  const int64_t items = outer * row_tiles * col_tiles;
#pragma omp parallel for schedule(static) if (acc >= cpu::kMinParallel)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t ct = it % col_tiles, rt = (it / col_tiles) % row_tiles;
    int64_t o = it / (col_tiles * row_tiles);
    int64_t xo = c.x_offset, yo = 0;
    for (int d = last - 1; d >= 0; --d) {
      if (d == k) continue;
      const int64_t i = o % c.shape[d];
      o /= c.shape[d];
      xo += i * c.x_strides[d];
      yo += i * ystride[d];
    }
    const int64_t r0 = rt * kTile, r1 = std::min(rows, r0 + kTile);
    const int64_t c0 = ct * kTile, c1 = std::min(cols, c0 + kTile);
    const float* xt = x + xo + r0 + c0 * xs;
    float* yt = y + yo + r0 * ystride[k] + c0;
    const int64_t nr = r1 - r0, nc = c1 - c0;
    if (nr == kTile && nc == kTile) {
      // Full tile: constant trip counts let the compiler unroll and vectorise the reads along r.
      float buf[kTile][kTile];
      for (int64_t q = 0; q < kTile; ++q)
        for (int64_t r = 0; r < kTile; ++r) buf[r][q] = xt[q * xs + r];
      for (int64_t r = 0; r < kTile; ++r) std::memcpy(yt + r * ystride[k], buf[r], sizeof(buf[r]));
    } else {
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t q = 0; q < nc; ++q) yt[r * ystride[k] + q] = xt[q * xs + r];
    }
  }
}

}  // namespace

void strided_copy_ref(const StridedCopyShape& s, const float* x, float* y) {
  const int64_t total = s.numel();
  for (int64_t i = 0; i < total; ++i) {
    int64_t rem = i, xo = s.x_offset;
    for (int d = s.ndim - 1; d >= 0; --d) {
      xo += (rem % s.shape[d]) * s.x_strides[d];
      rem /= s.shape[d];
    }
    y[i] = x[xo];
  }
}

void strided_copy_cpu(const StridedCopyShape& s, const float* x, float* y) {
  const int64_t total = s.numel();
  if (total <= 0) return;
  const StridedCopyShape c = s.coalesced();
  const int last = c.ndim - 1;
  const int64_t st = c.x_strides[last];
  // A strided innermost read with at least a few elements per row: look for a dim that reads x
  // contiguously and transpose through tiles instead of gathering one element per cache line.
  if (st != 0 && st != 1 && st != -1 && c.shape[last] >= 4) {
    for (int k = last - 1; k >= 0; --k)
      if (c.x_strides[k] == 1 && c.shape[k] >= 4) return copy_tiles(c, k, x, y);
  }
#pragma omp parallel if (total >= cpu::kMinParallel)
  {
    int64_t begin, end;
    cpu::thread_range(total, &begin, &end);
    copy_rows(c, x, y, begin, end);
  }
}

}  // namespace ev
