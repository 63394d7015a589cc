// Lane shuffles. The even and odd lanes of two consecutive vectors (lo, hi): the shuffle that splits a row read at
// stride 2 into its two phases. Used by the depthwise and pooling rows, the padded conv's phase copy and the
// strided 1x1 gather; 8 lanes everywhere, 16 with AVX-512. With AVX-512 also a 16 x 16 transpose.
#pragma once

namespace ev {
namespace cpu {

typedef float lanes8 __attribute__((vector_size(32)));

inline lanes8 even_lanes(lanes8 lo, lanes8 hi) { return __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14); }
inline lanes8 odd_lanes(lanes8 lo, lanes8 hi) { return __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15); }

#if defined(__AVX512F__)
typedef float lanes16 __attribute__((vector_size(64)));

inline lanes16 even_lanes(lanes16 lo, lanes16 hi) {
  return __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
inline lanes16 odd_lanes(lanes16 lo, lanes16 hi) {
  return __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// In-register 16 x 16 transpose: afterwards r[j][i] is the former r[i][j]. Four rounds; round B swaps the
// off-diagonal B x B blocks of every 2B x 2B block (16 two-source permutes per round). Turns pixel-major blocks
// of 16 channels into NCHW rows (the blocked conv kernels' stores).
template <int B>
inline __attribute__((always_inline)) void transpose16_round(lanes16* r) {
  constexpr auto lo = [](int j) { return j & B ? 16 + j - B : j; };
  constexpr auto hi = [](int j) { return j & B ? 16 + j : j + B; };
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    if (!(i & B)) {
      const lanes16 a = r[i], c = r[i + B];
      r[i] = __builtin_shufflevector(a, c, lo(0), lo(1), lo(2), lo(3), lo(4), lo(5), lo(6), lo(7), lo(8), lo(9),
                                     lo(10), lo(11), lo(12), lo(13), lo(14), lo(15));
      r[i + B] = __builtin_shufflevector(a, c, hi(0), hi(1), hi(2), hi(3), hi(4), hi(5), hi(6), hi(7), hi(8), hi(9),
                                         hi(10), hi(11), hi(12), hi(13), hi(14), hi(15));
    }
}

inline __attribute__((always_inline)) void transpose16(lanes16* r) {
  transpose16_round<8>(r);
  transpose16_round<4>(r);
  transpose16_round<2>(r);
  transpose16_round<1>(r);
}
#endif

}  // namespace cpu
}  // namespace ev
