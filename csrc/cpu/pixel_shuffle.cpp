// pixel_shuffle / DepthToSpace on the CPU: the reference and the fast path.
//
// Output pixel (oy, ox) = (iy * b + i, ix * b + j) of output channel c reads input channel
// c * b * b + i * b + j (CRD, PyTorch) or (i * b + j) * C + c (DCR, ONNX's default).
// Fast path: OpenMP over output rows; each row interleaves b input rows, with the block size a
// compile-time constant for the common b = 2, 3, 4 so the compiler turns the interleave into
// vector shuffles.
#include <cstdint>

#include "ops.h"

namespace ev {

namespace {
inline int64_t src_channel(const PixelShuffleShape& s, int64_t c, int64_t i, int64_t j) {
  const int64_t b = s.block;
  return s.mode == ShuffleMode::CRD ? (c * b + i) * b + j : (i * b + j) * s.c + c;
}

template <int B>
void interleave_row(const float* const* src, int64_t w, int64_t b_rt, float* dst) {
  const int64_t b = B > 0 ? B : b_rt;
  for (int64_t ix = 0; ix < w; ++ix)
    for (int64_t j = 0; j < b; ++j) dst[ix * b + j] = src[j][ix];
}
}  // namespace

void pixel_shuffle_ref(const PixelShuffleShape& s, const float* x, float* y) {
  const int64_t b = s.block, oh = s.h * b, ow = s.w * b;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const int64_t ci = src_channel(s, c, oy % b, ox % b);
          y[((n * s.c + c) * oh + oy) * ow + ox] =
              x[((n * s.c * b * b + ci) * s.h + oy / b) * s.w + ox / b];
        }
}

void pixel_shuffle_cpu(const PixelShuffleShape& s, const float* x, float* y) {
  const int64_t b = s.block, oh = s.h * b, ow = s.w * b;
  const int64_t rows = s.n * s.c * oh;
  // The b source-row pointers live on the stack; a larger block takes the plain indexing loop.
  constexpr int64_t kMaxTable = 64;
  // Small outputs run on one thread: waking a team costs more than the copy.
#pragma omp parallel for schedule(static) if (rows * ow > (int64_t{1} << 15))
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t oy = row % oh, c = (row / oh) % s.c, n = row / (oh * s.c);
    const int64_t iy = oy / b, i = oy % b;
    float* dst = y + row * ow;
    const float* xn = x + n * s.c * b * b * s.h * s.w;
    if (b > kMaxTable) {
      for (int64_t ox = 0; ox < ow; ++ox)
        dst[ox] = xn[(src_channel(s, c, i, ox % b) * s.h + iy) * s.w + ox / b];
      continue;
    }
    const float* src[kMaxTable];
    for (int64_t j = 0; j < b; ++j) src[j] = xn + (src_channel(s, c, i, j) * s.h + iy) * s.w;
    switch (b) {
      case 1: interleave_row<1>(src, s.w, b, dst); break;
      case 2: interleave_row<2>(src, s.w, b, dst); break;
      case 3: interleave_row<3>(src, s.w, b, dst); break;
      case 4: interleave_row<4>(src, s.w, b, dst); break;
      default: interleave_row<0>(src, s.w, b, dst); break;
    }
  }
}

}  // namespace ev
