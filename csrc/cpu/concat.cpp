// concat along one axis, CPU reference and fast path. Every input is a run of `outer` contiguous
// blocks of sizes[i] * inner floats, and y interleaves them. The fast path splits y's flat index
// range evenly over the threads and copies block pieces with memcpy, so the work is balanced whether
// the blocks are many and small (channel concat of small maps) or few and huge (axis 0).
#include <algorithm>
#include <cstring>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

void concat_range(const ConcatShape& s, const float* const* xs, float* y, int64_t row_len,
                  int64_t begin, int64_t end) {
  if (begin >= end) return;
  int64_t o = begin / row_len, off = begin % row_len;
  int i = 0;
  while (off >= s.sizes[i] * s.inner) off -= s.sizes[i++] * s.inner;  // input holding `begin`
  int64_t pos = begin;
  while (pos < end) {
    const int64_t block = s.sizes[i] * s.inner;
    const int64_t len = std::min(block - off, end - pos);
    if (len > 0) std::memcpy(y + pos, xs[i] + o * block + off, len * sizeof(float));
    pos += len;
    off = 0;
    if (++i == s.count) {
      i = 0;
      ++o;
    }
  }
}

}  // namespace

void concat_ref(const ConcatShape& s, const float* const* xs, float* y) {
  int64_t sum = 0;
  for (int i = 0; i < s.count; ++i) sum += s.sizes[i];
  for (int64_t o = 0; o < s.outer; ++o) {
    int64_t at = 0;
    for (int i = 0; i < s.count; ++i) {
      for (int64_t d = 0; d < s.sizes[i]; ++d)
        for (int64_t k = 0; k < s.inner; ++k)
          y[(o * sum + at + d) * s.inner + k] = xs[i][(o * s.sizes[i] + d) * s.inner + k];
      at += s.sizes[i];
    }
  }
}

void concat_cpu(const ConcatShape& s, const float* const* xs, float* y) {
  int64_t sum = 0;
  for (int i = 0; i < s.count; ++i) sum += s.sizes[i];
  const int64_t row_len = sum * s.inner, total = s.outer * row_len;
  if (total <= 0) return;
#pragma omp parallel if (total >= cpu::kMinParallel)
  {
    int64_t begin, end;
    cpu::thread_range(total, &begin, &end);
    concat_range(s, xs, y, row_len, begin, end);
  }
}

}  // namespace ev
