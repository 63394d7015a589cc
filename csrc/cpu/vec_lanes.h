// The even and odd lanes of two consecutive vectors (lo, hi): the shuffle that splits a row read at stride 2
// into its two phases. Used by the depthwise and pooling rows, the padded conv's phase copy and the strided
// 1x1 gather; 8 lanes everywhere, 16 with AVX-512.
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
#endif

}  // namespace cpu
}  // namespace ev
