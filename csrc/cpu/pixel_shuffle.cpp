// pixel_shuffle / DepthToSpace on the CPU: the reference and the fast path.
//
// Output pixel (oy, ox) = (iy * b + i, ix * b + j) of output channel c reads input channel
// c * b * b + i * b + j (CRD, PyTorch) or (i * b + j) * C + c (DCR, ONNX's default).
// Fast path: OpenMP over output planes; each row interleaves b input rows, with the block size a
// compile-time constant for the common b = 2, 3, 4 so the compiler turns the interleave into
// vector shuffles; small planes copy through a table of source offsets. An optional crop (top, left,
// crop_h x crop_w) selects a window of the shuffled map.
#include <cstdint>

#include "ops.h"

namespace ev {

namespace {
inline int64_t src_channel(const PixelShuffleShape& s, int64_t c, int64_t i, int64_t j) {
  const int64_t b = s.block;
  return s.mode == ShuffleMode::CRD ? (c * b + i) * b + j : (i * b + j) * s.c + c;
}

// Where output pixel (oy, ox) of output channel c reads, from the start of its image of x (the crop applied).
inline int64_t src_offset(const PixelShuffleShape& s, int64_t c, int64_t oy, int64_t ox) {
  const int64_t b = s.block, fy = oy + s.top, fx = ox + s.left;
  return (src_channel(s, c, fy % b, fx % b) * s.h + fy / b) * s.w + fx / b;
}

// dst[ix * b + j] = src[j][ix] for ix < w. For b = 2, 8 pixels at a time through two vector shuffles.
template <int B>
inline void interleave_row(const float* const* src, int64_t w, int64_t b_rt, float* dst) {
  const int64_t b = B > 0 ? B : b_rt;
  int64_t ix = 0;
  if constexpr (B == 2) {
    typedef float v8 __attribute__((vector_size(32)));
    typedef float v8u __attribute__((vector_size(32), aligned(4)));
    for (; ix + 8 <= w; ix += 8) {
      const v8 a = *reinterpret_cast<const v8u*>(src[0] + ix), c = *reinterpret_cast<const v8u*>(src[1] + ix);
      *reinterpret_cast<v8u*>(dst + 2 * ix) = __builtin_shufflevector(a, c, 0, 8, 1, 9, 2, 10, 3, 11);
      *reinterpret_cast<v8u*>(dst + 2 * ix + 8) = __builtin_shufflevector(a, c, 4, 12, 5, 13, 6, 14, 7, 15);
    }
  }
  for (; ix < w; ++ix)
    for (int64_t j = 0; j < b; ++j) dst[ix * b + j] = src[j][ix];
}
}  // namespace

void pixel_shuffle_ref(const PixelShuffleShape& s, const float* x, float* y) {
  const int64_t b = s.block, oh = s.out_h(), ow = s.out_w();
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox)
          y[((n * s.c + c) * oh + oy) * ow + ox] = x[n * s.c * b * b * s.h * s.w + src_offset(s, c, oy, ox)];
}

void pixel_shuffle_cpu(const PixelShuffleShape& s, const float* x, float* y) {
  const int64_t b = s.block, oh = s.out_h(), ow = s.out_w(), planes = s.n * s.c, in_plane = s.h * s.w;
  const bool whole = oh == s.h * b && ow == s.w * b;
  // Small planes (the DCGAN generators' 8x8 to 34x34, cropped or not) copy through a table of source offsets,
  // one load and store per output: row by row, their 5- to 17-pixel source rows cost more in loop overhead
  // than in copying. In CRD mode the offsets from a plane's first source channel are the same for every plane.
  constexpr int64_t kMaxTableOut = 4096;
  const bool table = oh * ow <= kMaxTableOut && s.mode == ShuffleMode::CRD;
  int32_t offsets[kMaxTableOut];
  if (table)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox)  // CRD: channel 0's offsets, from the plane's first source channel
        offsets[oy * ow + ox] = static_cast<int32_t>(src_offset(s, 0, oy, ox));
  // The b source-row pointers live on the stack; a larger block takes the plain indexing loop.
  constexpr int64_t kMaxRowTable = 64;
  // Output planes split over the threads; small outputs run on one thread: waking a team costs more than the
  // copy.
#pragma omp parallel for schedule(static) if (planes * oh * ow > (int64_t{1} << 15))
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t c = p % s.c;
    const float* xn = x + p / s.c * s.c * b * b * in_plane;
    float* yp = y + p * oh * ow;
    if (table) {
      const float* xc = xn + c * b * b * in_plane;
      for (int64_t e = 0; e < oh * ow; ++e) yp[e] = xc[offsets[e]];
      continue;
    }
    if (b > kMaxRowTable || !whole) {
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) yp[oy * ow + ox] = xn[src_offset(s, c, oy, ox)];
      continue;
    }
    const float* src[kMaxRowTable];
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t j = 0; j < b; ++j) src[j] = xn + src_channel(s, c, i, j) * in_plane;
      for (int64_t iy = 0; iy < s.h; ++iy) {
        float* dst = yp + (iy * b + i) * ow;
        switch (b) {
          case 1: interleave_row<1>(src, s.w, b, dst); break;
          case 2: interleave_row<2>(src, s.w, b, dst); break;
          case 3: interleave_row<3>(src, s.w, b, dst); break;
          case 4: interleave_row<4>(src, s.w, b, dst); break;
          default: interleave_row<0>(src, s.w, b, dst); break;
        }
        for (int64_t j = 0; j < b; ++j) src[j] += s.w;
      }
    }
  }
}

}  // namespace ev
