// pad (constant, reflect, edge) on the CPU: the reference and the fast path.
//
// Fast path: dims are first simplified (size-1 dims without pads dropped, neighbours without pads
// merged, and in constant mode an unpadded inner dim folded into its outer neighbour, whose pads then
// count whole inner blocks). A spatial pad of [n, c, h, w] thus becomes [n * c, h, w]. The output is
// then written row by row (rows of the last dim): one source row per output row, copied with memcpy
// between its left and right pads; a row that lies in the constant padding of an outer dim is
// filled. Threads split the rows evenly; each walks its rows with an odometer.
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

// Source index of output index o along a dim of extent n padded by b in front, or -1 for the constant.
inline int64_t src_index(int64_t o, int64_t n, int64_t b, PadMode mode) {
  int64_t i = o - b;
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case PadMode::Constant: return -1;
    case PadMode::Edge: return i < 0 ? 0 : n - 1;
    case PadMode::Reflect: return i < 0 ? -i : 2 * (n - 1) - i;
  }
  return -1;
}

PadShape simplify(const PadShape& s) {
  PadShape c = s;
  c.ndim = 0;
  for (int d = 0; d < s.ndim; ++d) {
    const bool padded = s.pad_begin[d] != 0 || s.pad_end[d] != 0;
    if (!padded && s.shape[d] == 1) continue;
    if (c.ndim > 0) {
      const int k = c.ndim - 1;
      const bool prev_padded = c.pad_begin[k] != 0 || c.pad_end[k] != 0;
      if (!padded && (!prev_padded || s.mode == PadMode::Constant)) {
        c.shape[k] *= s.shape[d];
        c.pad_begin[k] *= s.shape[d];
        c.pad_end[k] *= s.shape[d];
        continue;
      }
    }
    c.shape[c.ndim] = s.shape[d];
    c.pad_begin[c.ndim] = s.pad_begin[d];
    c.pad_end[c.ndim] = s.pad_end[d];
    ++c.ndim;
  }
  if (c.ndim == 0) {
    c.ndim = 1;
    c.shape[0] = 1;
    c.pad_begin[0] = c.pad_end[0] = 0;
  }
  return c;
}

// One output row of the last dim: n source elements at x (nullptr: all constant).
void pad_row(const PadShape& c, const float* x, float* y) {
  const int last = c.ndim - 1;
  const int64_t n = c.shape[last], b = c.pad_begin[last], e = c.pad_end[last];
  const int64_t out = n + b + e;
  if (!x) {
    std::fill(y, y + out, c.value);
    return;
  }
  std::memcpy(y + b, x, static_cast<size_t>(n) * sizeof(float));
  switch (c.mode) {
    case PadMode::Constant:
      std::fill(y, y + b, c.value);
      std::fill(y + b + n, y + out, c.value);
      break;
    case PadMode::Edge:
      std::fill(y, y + b, x[0]);
      std::fill(y + b + n, y + out, x[n - 1]);
      break;
    case PadMode::Reflect:
      for (int64_t j = 0; j < b; ++j) y[j] = x[b - j];
      for (int64_t j = 0; j < e; ++j) y[b + n + j] = x[n - 2 - j];
      break;
  }
}

// Output rows [begin, end) of the simplified pad c.
void pad_rows(const PadShape& c, const float* x, float* y, int64_t begin, int64_t end) {
  if (begin >= end) return;
  const int last = c.ndim - 1;
  const int64_t ow = c.out_dim(last);
  int64_t xstride[kMaxDims];
  int64_t acc = 1;
  for (int d = last; d >= 0; --d) xstride[d] = acc, acc *= c.shape[d];
  int64_t idx[kMaxDims] = {0};
  int64_t rem = begin;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = rem % c.out_dim(d);
    rem /= c.out_dim(d);
  }
  for (int64_t row = begin; row < end; ++row) {
    int64_t xo = 0;
    bool constant = false;
    for (int d = 0; d < last; ++d) {
      const int64_t i = src_index(idx[d], c.shape[d], c.pad_begin[d], c.mode);
      if (i < 0) {
        constant = true;
        break;
      }
      xo += i * xstride[d];
    }
    pad_row(c, constant ? nullptr : x + xo, y + row * ow);
    for (int d = last - 1; d >= 0; --d) {
      if (++idx[d] < c.out_dim(d)) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void pad_ref(const PadShape& s, const float* x, float* y) {
  int64_t total = 1;
  for (int d = 0; d < s.ndim; ++d) total *= s.out_dim(d);
  for (int64_t o = 0; o < total; ++o) {
    int64_t rem = o, xo = 0, xstride = 1;
    bool constant = false;
    for (int d = s.ndim - 1; d >= 0; --d) {
      const int64_t i = src_index(rem % s.out_dim(d), s.shape[d], s.pad_begin[d], s.mode);
      rem /= s.out_dim(d);
      if (i < 0) constant = true;
      xo += i * xstride;
      xstride *= s.shape[d];
    }
    y[o] = constant ? s.value : x[xo];
  }
}

void pad_cpu(const PadShape& s, const float* x, float* y) {
  const PadShape c = simplify(s);
  const int last = c.ndim - 1;
  int64_t rows = 1;
  for (int d = 0; d < last; ++d) rows *= c.out_dim(d);
  const int64_t total = rows * c.out_dim(last);
  if (total <= 0) return;
#pragma omp parallel if (total >= cpu::kMinParallel)
  {
    int64_t begin, end;
    cpu::thread_range(rows, &begin, &end);
    pad_rows(c, x, y, begin, end);
  }
}

}  // namespace ev
