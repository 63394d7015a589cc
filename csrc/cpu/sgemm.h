// Internal blocked SGEMM shared by conv2d and gemm: C[M, N] = epilogue(A[M, K] * B[K, N]).
//
// BLIS-style loops (NC columns -> KC depth -> MC rows -> NR panel -> MR panel) around an MR x 16
// register tile: 6 x 16 of v8f accumulators (12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16
// AVX2 registers; on aarch64 GCC lowers each v8f to two NEON q registers), or, where the compiler targets
// AVX-512, 12 x 16 of 16-lane accumulators (12 + 1 B vector + broadcasts of the 32 registers; the 6 x 16
// tile used half of each multiply-add). The code is GCC vector extensions, plus masked moves for ragged
// columns on AVX-512 (ColMask).
//
// A is either packed once ahead of time (AView::packed, pack_a: the conv weights, packed when a plan is
// built) or read in place, row- or column-major (gemm's operands, which change every call; only a ragged
// last MR panel is copied into zero-padded scratch so the kernel never reads past the matrix). B is always in
// NR-wide panels (columns past N hold values the store drops): a caller-provided functor packs each block
// (a plain copy for gemm, implicit im2col for conv) and returns where it is, which is the packing buffer or,
// for B already in that layout (a constant gemm B packed at plan build, Winograd's V), B itself. When K
// needs several KC blocks the partial sums go to per-thread scratch, not to C, so a residual that aliases
// the output is still read before C is written.
// The epilogue (alpha, bias, activation, residual) is applied in the store of the final block; with a
// single block, whole tiles apply it to the accumulators in registers (kernel_store). A last panel with
// one real column runs as dot products along K (narrow_kernel).
#pragma once
#include <omp.h>
#if defined(__AVX512VL__)
#include <immintrin.h>  // ColMask's masked 8-lane moves
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/vec_act.h"
#include "epilogue.h"
#include "ops.h"

namespace ev {
namespace sgemm {

typedef float v8f __attribute__((vector_size(32)));
typedef float v8fu __attribute__((vector_size(32), aligned(4)));  // unaligned loads/stores

#if defined(__AVX512F__)
#define EV_SGEMM_AVX512 1
typedef float v16f __attribute__((vector_size(64)));
typedef float v16fu __attribute__((vector_size(64), aligned(4)));
constexpr int MR = 12;
#else
#define EV_SGEMM_AVX512 0
constexpr int MR = 6;
#endif
// The widest vector the kernels use (the depthwise rows and channel blocks, the dot products): 16 lanes with
// AVX-512, else 8.
#if EV_SGEMM_AVX512
typedef v16f vwide;
typedef v16fu vwideu;
#else
typedef v8f vwide;
typedef v8fu vwideu;
#endif
constexpr int kWideLanes = sizeof(vwide) / sizeof(float);
constexpr int NR = 16;
// narrow_kernel_packed loads a k's MR values as one vector of VMR lanes (reading VMR - MR past them).
constexpr int VMR = MR <= 8 ? 8 : 16;
typedef float vmr __attribute__((vector_size(VMR * 4), aligned(4)));
// Depth blocks are KC = 256 deep (a B panel KC x NR = 16 KiB stays in L1), except that K up to
// KC_ONE runs as one block: K = 288 (a 3x3 conv over 32 channels) as 256 + 32 would cost a round
// trip of every partial sum through scratch for 32 multiply-adds (seed CNN conv 32->64 @15:
// 41 -> 52 GFLOP/s on epyc2, 1 thread). Splitting larger K evenly into <= 320-deep blocks instead
// was slower on big convs (ResNet 64->64 @56, K = 576: 119 -> 90 GFLOP/s). With AVX-512 (the Xeon's L1d is
// 48 KiB) one block reaches K = 576, a 36 KiB panel: MobileNet's 384-576 -> 64-160 projections and 3x3 convs
// over 64 channels then keep their sums in registers. Paired A/B against 320, Xeon, 1 thread: 1x1 384 -> 64 at
// 14x14 0.88-0.90 (2 threads 0.86-0.98), 480 -> 80 at 14x14 0.94, 576 -> 96 at 14x14 0.97, 576 -> 160 at 7x7
// 0.94, 3x3 64 -> 128 stride 2 at 56x56 0.99 (2 threads 0.97), 3x3 40 -> 40 at 28x28 (K = 360) 0.90.
#if EV_SGEMM_AVX512
constexpr int64_t KC = 256, KC_ONE = 576;
#else
constexpr int64_t KC = 256, KC_ONE = 320;
#endif
constexpr int64_t MC = 96;   // A block MC x KC_ONE = 120 KiB (216 KiB with AVX-512) stays in L2
// The AVX-512 tile prefetches packed A this many k ahead (32 x 48 bytes): a tile's weights come from L2 (or
// further: ResNet-18's 512 -> 512 3x3 weights are 9.4 MB), 48 bytes per 12 multiply-adds, and perf showed the
// tile waiting on the broadcast that starts each new A cache line. Xeon, sgemm alone, paired, 1 thread:
// M 512, N 49, K 4608 0.86-0.90 (16 ahead 0.86-0.90, 8 ahead 0.88, 64 0.84); in-cache 96 x 384 x 256 1.00.
constexpr int64_t PF_K = 32;
constexpr int64_t NC = 384;  // packed B block KC_ONE x NC = 480 KiB per thread (L2/L3)

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t depth_block(int64_t K) { return K <= KC_ONE ? K : KC; }

// Element (i, p) of A is p_[i * rs + p * cs]; one of rs, cs is 1.
struct AView {
  const float* p;
  int64_t rs, cs;
  // Or packed (pack_a): per depth block, MR-row panels of kc x MR with the MR values of one k contiguous.
  bool packed = false;
};

// Where the result goes. Columns come in groups of group_cols columns (gemm: all N; pointwise
// conv: one image's pixels; padded conv: one output row over the padded input's pitch), of which
// the first group_valid are real outputs and the rest are dropped. Element (i, j) with
// j = g * group_cols + jj, jj < group_valid, is c[g * group_stride + i * ldc + jj]. The residual
// uses the same addressing.
struct CView {
  float* c;
  int64_t ldc;
  int64_t group_cols, group_valid, group_stride;
  const float* bias;  // per row (conv) or per column (gemm), or nullptr
  bool bias_per_row;
  const float* res;   // or nullptr
  float alpha;
  Epilogue e;
};

// MR x 16 tile: A panel (MR x kc) * B panel (kc x 16), handed to sink(i, left, right) row by row as two v8f
// (always inlined, so the accumulators stay in registers up to the sink). ROW: A rows are separate
// streams rs apart (A in place, row-major); PACKED: pack_a's panel, the MR values of one k contiguous;
// otherwise column-major A, one k's MR values contiguous and cs apart.
template <bool ROW, class Sink, bool PACKED = false, int ROWS = MR>
inline __attribute__((always_inline)) void micro_tile(int64_t kc, const float* __restrict a, int64_t rs,
                                                      int64_t cs, const float* __restrict b, Sink&& sink) {
#if EV_SGEMM_AVX512
  // One 16-lane accumulator per row: MR = 12 accumulators + the B row + a broadcast of the 32 registers.
  // ROWS < MR: only the first ROWS rows of the panel (a ragged last row panel, see tail_rows).
  // A tail of 4 or 8 rows keeps two sets of accumulators (even and odd k, summed at the end): 4 chains of
  // 4-cycle multiply-adds fed two pipes at half rate (sgemm tile alone, Xeon, kc = 147 and 256: 4 rows
  // 77 -> 119-124 GFLOP/s, 8 rows 110-116 -> 118-128; 12 rows run 125-151).
  constexpr int CH = ROWS <= 8 ? 2 : 1;
  v16f c[CH][ROWS];
#pragma GCC unroll 2
  for (int h = 0; h < CH; ++h)
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) c[h][i] = v16f{};
  const auto step = [&](int h, int64_t p) __attribute__((always_inline)) {
    const v16f bv = *reinterpret_cast<const v16fu*>(b);
    b += NR;
    if (PACKED) __builtin_prefetch(a + (p + PF_K) * MR);  // past the panel: the next tile's, read next
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) {
      const float x = ROW ? a[i * rs + p] : PACKED ? a[p * MR + i] : a[i];
      c[h][i] += bv * x;
    }
    if (!ROW && !PACKED) a += cs;
  };
  int64_t p = 0;
#pragma GCC unroll 2
  for (; p + CH <= kc; p += CH)
#pragma GCC unroll 2
    for (int h = 0; h < CH; ++h) step(h, p + h);
  if (CH > 1) {
    if (p < kc) step(0, p);
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) c[0][i] += c[CH - 1][i];
  }
#pragma GCC unroll 12
  for (int i = 0; i < ROWS; ++i)
    sink(i, __builtin_shufflevector(c[0][i], c[0][i], 0, 1, 2, 3, 4, 5, 6, 7),
         __builtin_shufflevector(c[0][i], c[0][i], 8, 9, 10, 11, 12, 13, 14, 15));
#else
  static_assert(ROWS == MR, "the 8-lane tile is always 6 rows");
  v8f c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {};
  v8f c30 = {}, c31 = {}, c40 = {}, c41 = {}, c50 = {}, c51 = {};
  const float* a0 = a;
  const float* a1 = a + rs;
  const float* a2 = a + 2 * rs;
  const float* a3 = a + 3 * rs;
  const float* a4 = a + 4 * rs;
  const float* a5 = a + 5 * rs;
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const v8f b0 = *reinterpret_cast<const v8f*>(b);
    const v8f b1 = *reinterpret_cast<const v8f*>(b + 8);
    b += NR;
    float x0, x1, x2, x3, x4, x5;
    if (ROW) {
      x0 = a0[p]; x1 = a1[p]; x2 = a2[p]; x3 = a3[p]; x4 = a4[p]; x5 = a5[p];
    } else if (PACKED) {
      x0 = a[p * MR]; x1 = a[p * MR + 1]; x2 = a[p * MR + 2]; x3 = a[p * MR + 3]; x4 = a[p * MR + 4];
      x5 = a[p * MR + 5];
    } else {
      x0 = a[0]; x1 = a[1]; x2 = a[2]; x3 = a[3]; x4 = a[4]; x5 = a[5];
      a += cs;
    }
    c00 += b0 * x0; c01 += b1 * x0;
    c10 += b0 * x1; c11 += b1 * x1;
    c20 += b0 * x2; c21 += b1 * x2;
    c30 += b0 * x3; c31 += b1 * x3;
    c40 += b0 * x4; c41 += b1 * x4;
    c50 += b0 * x5; c51 += b1 * x5;
  }
  sink(0, c00, c01); sink(1, c10, c11); sink(2, c20, c21);
  sink(3, c30, c31); sink(4, c40, c41); sink(5, c50, c51);
#endif
}

// The tile into acc[MR * NR], for the stores below.
template <bool ROW, bool PACKED = false>
inline void micro_kernel(int64_t kc, const float* __restrict a, int64_t rs, int64_t cs,
                         const float* __restrict b, float* __restrict acc) {
  v8f* o = reinterpret_cast<v8f*>(acc);
  auto sink = [o](int i, v8f l, v8f r) {
    o[2 * i] = l;
    o[2 * i + 1] = r;
  };
  micro_tile<ROW, decltype(sink)&, PACKED>(kc, a, rs, cs, b, sink);
}

// A last panel this narrow (N = 49, a 7x7 map, leaves one column) runs as dot products along K instead
// of an MR x 16 tile that is all padding but one column. epyc2, 1 thread, sgemm alone: 1x1 320 -> 1280 at 7x7
// 0.61 -> 0.49 ms, 160 -> 960 0.28 -> 0.25, 960 -> 160 0.29 -> 0.25. Not wider: at K = 64 a 4-column
// last panel (N = 196) measured no faster than the full tile.
constexpr int NARROW = 1;

// acc[i * NR + j] = sum_p A(i, p) * bt[j * kc + p] for the MR rows (rs apart, contiguous in p) and the
// nr <= NARROW columns of bt; the other columns of acc are left alone. Six independent row sums per
// column keep the multiply-adds from waiting on each other.
inline void narrow_kernel(int64_t kc, const float* __restrict a, int64_t rs, const float* __restrict bt, int nr,
                          float* __restrict acc) {
  for (int j = 0; j < nr; ++j) {
    const float* b = bt + j * kc;
    v8f s[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) s[i] = v8f{};
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
      const v8f bv = *reinterpret_cast<const v8fu*>(b + p);
#pragma GCC unroll 12
      for (int i = 0; i < MR; ++i) s[i] += *reinterpret_cast<const v8fu*>(a + i * rs + p) * bv;
    }
    for (int i = 0; i < MR; ++i) {
      const v8f& v = s[i];
      float t = ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
      const float* ai = a + i * rs;
      for (int64_t q = p; q < kc; ++q) t += ai[q] * b[q];
      acc[i * NR + j] = t;
    }
  }
}

// narrow_kernel for packed A (pack_a): one multiply-add of a k's MR values (and VMR - MR lanes past them,
// which pack_a pads) per column value; four chains so the adds do not wait on each other.
inline void narrow_kernel_packed(int64_t kc, const float* __restrict a, const float* __restrict bt, int nr,
                                 float* __restrict acc) {
  for (int j = 0; j < nr; ++j) {
    const float* b = bt + j * kc;
    vmr s0 = {}, s1 = {}, s2 = {}, s3 = {};
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
      s0 += *reinterpret_cast<const vmr*>(a + p * MR) * b[p];
      s1 += *reinterpret_cast<const vmr*>(a + (p + 1) * MR) * b[p + 1];
      s2 += *reinterpret_cast<const vmr*>(a + (p + 2) * MR) * b[p + 2];
      s3 += *reinterpret_cast<const vmr*>(a + (p + 3) * MR) * b[p + 3];
    }
    for (; p < kc; ++p) s0 += *reinterpret_cast<const vmr*>(a + p * MR) * b[p];
    const vmr t = (s0 + s1) + (s2 + s3);
    for (int i = 0; i < MR; ++i) acc[i * NR + j] = t[i];
  }
}

// Packed A (AView::packed): per depth block (depth_block(K) deep, the last one shorter), the ceil(M / MR)
// row panels, each kc x MR with the MR values of one k contiguous and zero rows padding the last panel.
// A tile then reads its weights as one sequential stream, and consecutive tiles continue it (with A read
// in place, a tile read MR rows K floats apart, short streams the prefetcher does not follow: in-model,
// with the weights cold, MobileNetV2's 1x1 160 -> 960 at 7x7 took 350 us in place and 240 packed).
// + VMR: narrow_kernel_packed's last load reads VMR - MR floats past the last panel.
inline int64_t packed_a_floats(int64_t M, int64_t K) { return round_up(M, MR) * K + VMR; }

// Offset of the panel of rows [ir, ir + MR) (ir a multiple of MR) in the depth block that starts at pc
// (kc deep): the one place the layout is spelled out.
inline int64_t packed_panel_offset(int64_t M, int64_t ir, int64_t pc, int64_t kc) {
  return pc * round_up(M, MR) + ir * kc;
}

inline const float* packed_panel(const float* a, int64_t M, int64_t ir, int64_t pc, int64_t kc) {
  return a + packed_panel_offset(M, ir, pc, kc);
}

// Where element (i, p) of A goes.
inline int64_t packed_index(int64_t M, int64_t K, int64_t i, int64_t p) {
  const int64_t kb = depth_block(K), pc = p / kb * kb;
  return packed_panel_offset(M, i - i % MR, pc, std::min(kb, K - pc)) + (p - pc) * MR + i % MR;
}

// A (M x K, row-major) -> dst (packed_a_floats(M, K) floats), in depth blocks of kb (0: depth_block(K)).
inline void pack_a(const float* a, int64_t M, int64_t K, float* dst, int64_t kb = 0) {
  if (kb == 0) kb = depth_block(K);
  for (int64_t pc = 0; pc < K; pc += kb) {
    const int64_t kc = std::min(kb, K - pc);
    for (int64_t ir = 0; ir < M; ir += MR) {
      float* d = dst + packed_panel_offset(M, ir, pc, kc);
      for (int i = 0; i < MR; ++i)
        for (int64_t p = 0; p < kc; ++p) d[p * MR + i] = ir + i < M ? a[(ir + i) * K + pc + p] : 0.f;
    }
  }
  std::fill(dst + round_up(M, MR) * K, dst + packed_a_floats(M, K), 0.f);
}

// Final store of mr x len accumulators to one contiguous run of columns: y = epi(alpha * acc + bias
// + res). Rows are NR apart in acc (the depthwise kernels pass one long row). The activation is a
// template argument and runs on 8-lane vectors (vec_act.h) over chunks of the row.
template <Act ACT>
void store_final(const float* acc, int mr, int len, float* c, int64_t ldc, const float* res,
                 const float* bias_row, const float* bias_col, float alpha, const Epilogue& e) {
  constexpr int kChunk = 64;  // a multiple of 8: only a row's last vector is partial
  const float al = e.alpha, be = e.beta;
  alignas(32) float t[kChunk];
  for (int i = 0; i < mr; ++i) {
    const float* ai = acc + i * NR;
    float* ci = c + i * ldc;
    const float* ri = res ? res + i * ldc : nullptr;
    const float br = bias_row ? bias_row[i] : 0.f;
    const bool res_before = ri && !e.residual_after_act, res_after = ri && e.residual_after_act;
    if (!ri && !bias_col && alpha == 1.f) {
      // The depthwise kernels' store (a block of output rows as one long row, no residual): y = epi(acc +
      // bias) in one pass through registers, the same arithmetic as the chunked passes below. Paired A/B
      // against those passes (epyc2, 1 thread, conv2d_cpu alone): MobileNetV2's depthwise convs 0.79-0.96x
      // the time (32 ch at 112x112 0.79, 144 at 56x56 0.83, 96 at 112 stride 2 0.89-0.96), 384-960 ch at
      // 14x14 and 7x7 0.81-0.89, EfficientNet-Lite0's 5x5 at 28x28 0.88-0.91.
      int j = 0;
      for (; j + 8 <= len; j += 8)
        *reinterpret_cast<v8fu*>(ci + j) = cpu::activate8<ACT>(*reinterpret_cast<const v8fu*>(ai + j) + br, al, be);
      if (j < len) {
        v8f v = {};
        for (int q = j; q < len; ++q) v[q - j] = ai[q];
        v = cpu::activate8<ACT>(v + br, al, be);
        for (int q = j; q < len; ++q) ci[q] = v[q - j];
      }
      continue;
    }
    for (int j0 = 0; j0 < len; j0 += kChunk) {
      const int n = len - j0 < kChunk ? len - j0 : kChunk;
      for (int j = 0; j < n; ++j) t[j] = alpha * ai[j0 + j] + br;
      if (bias_col)
        for (int j = 0; j < n; ++j) t[j] += bias_col[j0 + j];
      if (res_before)
        for (int j = 0; j < n; ++j) t[j] += ri[j0 + j];
      cpu::activate_span<ACT>(t, t, n, al, be);
      if (res_after)
        for (int j = 0; j < n; ++j) ci[j0 + j] = t[j] + ri[j0 + j];
      else
        for (int j = 0; j < n; ++j) ci[j0 + j] = t[j];
    }
  }
}

using StoreFn = void (*)(const float*, int, int, float*, int64_t, const float*, const float*,
                         const float*, float, const Epilogue&);

// The common case of store_final: a whole MR x NR tile with a per-row bias (convolutions), two vectors
// per row (with a runtime length the loop's setup cost as much as the 6x16x16 micro-kernel of a 1x1
// conv over 16 channels).
template <Act ACT>
void store_tile(const float* acc, float* c, int64_t ldc, const float* res, const float* bias_row, float alpha,
                const Epilogue& e) {
  const float al = e.alpha, be = e.beta;
  for (int i = 0; i < MR; ++i) {
    const float br = bias_row ? bias_row[i] : 0.f;
    for (int h = 0; h < NR; h += 8) {
      v8f v = *reinterpret_cast<const v8f*>(acc + i * NR + h) * alpha + br;
      v8fu* ci = reinterpret_cast<v8fu*>(c + i * ldc + h);
      if (!res) {
        *ci = cpu::activate8<ACT>(v, al, be);
      } else {
        const v8f r = *reinterpret_cast<const v8fu*>(res + i * ldc + h);
        *ci = e.residual_after_act ? cpu::activate8<ACT>(v, al, be) + r : cpu::activate8<ACT>(v + r, al, be);
      }
    }
  }
}

using TileStoreFn = void (*)(const float*, float*, int64_t, const float*, const float*, float, const Epilogue&);

// Calls f(std::integral_constant<Act, a>{}) so a runtime activation picks a compile-time instantiation.
template <class F>
auto with_act(Act a, F f) {
  switch (a) {
    case Act::None: break;
    case Act::ReLU: return f(std::integral_constant<Act, Act::ReLU>{});
    case Act::LeakyReLU: return f(std::integral_constant<Act, Act::LeakyReLU>{});
    case Act::Clip: return f(std::integral_constant<Act, Act::Clip>{});
    case Act::Sigmoid: return f(std::integral_constant<Act, Act::Sigmoid>{});
    case Act::Tanh: return f(std::integral_constant<Act, Act::Tanh>{});
    case Act::SiLU: return f(std::integral_constant<Act, Act::SiLU>{});
    case Act::HardSwish: return f(std::integral_constant<Act, Act::HardSwish>{});
    case Act::GELU: return f(std::integral_constant<Act, Act::GELU>{});
    case Act::HardSigmoid: return f(std::integral_constant<Act, Act::HardSigmoid>{});
  }
  return f(std::integral_constant<Act, Act::None>{});
}

inline StoreFn pick_store(Act a) {
  return with_act(a, [](auto act) -> StoreFn { return store_final<decltype(act)::value>; });
}

inline TileStoreFn pick_tile_store(Act a) {
  return with_act(a, [](auto act) -> TileStoreFn { return store_tile<decltype(act)::value>; });
}

// The first nc (1..NR) columns of a tile row, as its two 8-lane halves: kernel_store's loads and stores of a
// row of C. A last panel under NR columns wide (MobileNetV2's 14x14 maps: 196 = 12 x 16 + 4 columns) is stored
// like the whole ones, with masked moves, not through micro_kernel + store_final (M = 1280, N = 47, K = 320
// took 1.3x the time of N = 64 that way, Xeon, 1 thread). Masked loads never touch the columns past nc.
// AVX-512VL's masked moves where available, else a scalar loop.
struct ColMask {
  int nc;
#if defined(__AVX512VL__)
  __mmask8 lo, hi;
  explicit ColMask(int n)
      : nc(n), lo(n >= 8 ? 0xFF : (1u << n) - 1), hi(n >= 16 ? 0xFF : n > 8 ? (1u << (n - 8)) - 1 : 0) {}
#else
  explicit ColMask(int n) : nc(n) {}
#endif
  void load(const float* p, v8f& l, v8f& r) const {
    if (nc == NR) {
      l = *reinterpret_cast<const v8fu*>(p);
      r = *reinterpret_cast<const v8fu*>(p + 8);
      return;
    }
#if defined(__AVX512VL__)
    l = reinterpret_cast<v8f>(_mm256_maskz_loadu_ps(lo, p));
    r = reinterpret_cast<v8f>(_mm256_maskz_loadu_ps(hi, p + 8));
#else
    l = v8f{};
    r = v8f{};
    for (int j = 0; j < nc; ++j) (j < 8 ? l[j] : r[j - 8]) = p[j];
#endif
  }
  void store(float* p, v8f l, v8f r) const {
    if (nc == NR) {
      *reinterpret_cast<v8fu*>(p) = l;
      *reinterpret_cast<v8fu*>(p + 8) = r;
      return;
    }
#if defined(__AVX512VL__)
    _mm256_mask_storeu_ps(p, lo, reinterpret_cast<__m256>(l));
    _mm256_mask_storeu_ps(p + 8, hi, reinterpret_cast<__m256>(r));
#else
    for (int j = 0; j < nc; ++j) p[j] = j < 8 ? l[j] : r[j - 8];
#endif
  }
};

// One MR x 16 tile of a single-depth-block GEMM (the first mr rows and nc columns stored) with the epilogue
// applied to the accumulators in registers (vec_act.h) and stored straight into C (per-row bias, as
// store_tile). Saves store_tile's round trip of the accumulators through memory and its call: on a 1x1
// conv over 16 channels that was a third of the micro-kernel's time. mr < MR: the last row panel of packed A
// (its padding rows are zeros) or the zero-padded copy of a ragged row-major one; through store_final, the
// 4-row panel of MobileNetV2's 1x1 32 -> 16 at 112x112 took 12% of that conv's time.
template <Act ACT, bool PACKED, int ROWS = MR>
void kernel_store(int64_t kc, const float* __restrict a, int64_t rs, const float* __restrict b, float* c,
                  int64_t ldc, const float* res, const float* bias_row, float alpha, const Epilogue& e, int mr,
                  int nc) {
  const float al = e.alpha, be = e.beta;
  const bool after = e.residual_after_act;
  const ColMask mask(nc);
  auto sink = [&](int i, v8f l, v8f r) {
    if (i >= mr) return;
    const float br = bias_row ? bias_row[i] : 0.f;
    l = l * alpha + br;
    r = r * alpha + br;
    float* ci = c + i * ldc;
    if (res) {
      v8f rl, rr;
      mask.load(res + i * ldc, rl, rr);
      if (after) {
        l = cpu::activate8<ACT>(l, al, be) + rl;
        r = cpu::activate8<ACT>(r, al, be) + rr;
      } else {
        l = cpu::activate8<ACT>(l + rl, al, be);
        r = cpu::activate8<ACT>(r + rr, al, be);
      }
    } else {
      l = cpu::activate8<ACT>(l, al, be);
      r = cpu::activate8<ACT>(r, al, be);
    }
    mask.store(ci, l, r);
  };
  micro_tile<!PACKED, decltype(sink)&, PACKED, ROWS>(kc, a, rs, 1, b, sink);
}

using KernelStoreFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, const float*,
                               const float*, float, const Epilogue&, int, int);

// Rows a tile of a ragged last row panel of mr rows computes: with AVX-512's 12-row tile, 4 or 8 (4 FMA chains
// are still enough there to keep the tile well fed): M = 16 (MobileNetV2's 32 -> 16 at 112x112) computed 24 rows
// for 16, M = 64 (ResNet-18's first stage, the seed CNN) 72 for 64.
inline int tail_rows(int mr) {
#if EV_SGEMM_AVX512
  return mr <= 4 ? 4 : mr <= 8 ? 8 : MR;
#else
  (void)mr;
  return MR;
#endif
}

inline KernelStoreFn pick_kernel_store(Act a, bool packed, int rows = MR) {
  return with_act(a, [packed, rows](auto act) -> KernelStoreFn {
    constexpr Act A = decltype(act)::value;
    if constexpr (!cpu::has_vector_act<A>()) {
      return nullptr;
    } else {
#if EV_SGEMM_AVX512
      if (rows == 4) return packed ? kernel_store<A, true, 4> : kernel_store<A, false, 4>;
      if (rows == 8) return packed ? kernel_store<A, true, 8> : kernel_store<A, false, 8>;
#endif
      (void)rows;
      return packed ? kernel_store<A, true> : kernel_store<A, false>;
    }
  });
}

// Per-thread scratch, in floats: packed B block (+ NR: a packer may write that far past the block),
// partial sums (when K > KC_ONE), ragged A panel, narrow panel's columns.
inline int64_t thread_scratch_floats(int64_t M, int64_t K) {
  const int64_t b = KC_ONE * NC + NR;
  const int64_t part = K > KC_ONE ? round_up(M, MR) * NC : 0;
  return b + part + MR * KC_ONE + NARROW * KC_ONE + 16;  // + 16: room to align to 64 bytes
}

inline size_t workspace_bytes(int64_t M, int64_t K, int threads) {
  return static_cast<size_t>(thread_scratch_floats(M, K)) * threads * sizeof(float) + 64;
}

inline float* align64(void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<float*>((u + 63) & ~uintptr_t(63));
}

// How `threads` threads split the M x N tile grid: tn along N, tm along M, tn * tm <= threads. pack_cost: what
// packing one B panel costs, in tiles (PackB::pack_cost(), else kPackCost).
constexpr double kPackCost = 1.0 / 3.0;
inline void split_threads(int64_t M, int64_t N, int threads, int* tm, int* tn, double pack_cost = kPackCost) {
  const int64_t mp = ceil_div(M, MR), np = ceil_div(N, NR);
  // A last panel of NARROW columns runs as dot products: about a sixth of a tile's time. Counted as a whole
  // panel, it put ResNet-18's 3x3 convs at 7x7 (N = 49: 3 panels + 1 column) on an N split of 2 + 1.1 panels.
  const bool narrow_last = N % NR != 0 && N % NR <= NARROW;
  int best_m = 1, best_n = 1;
  double best = -1;
  for (int a = 1; a <= threads; ++a) {
    if (threads % a) continue;
    const int b = threads / a;  // a along M, b along N
    if (a > mp || b > np) continue;
    // Work per thread in tiles (the slowest thread decides) plus the B panels it packs (a plain copy: about
    // a third of a tile's work): splitting M makes every thread pack the same B, which matters when M is
    // small (a flat 2% penalty per M split put MobileNetV2's 1x1 192 -> 32 at 28x28 on an M split, 20%
    // slower at 2 threads on epyc2).
    double cols = 0;  // the busiest column range, in panels
    for (int t = 0; t < b; ++t) {
      const int64_t q0 = np * t / b, q1 = np * (t + 1) / b;
      cols = std::max(cols, double(q1 - q0) - (narrow_last && q1 == np ? 5.0 / 6.0 : 0.0));
    }
    const double cost = double(ceil_div(mp, a)) * cols + double(ceil_div(np, b)) * pack_cost;
    if (best < 0 || cost < best) best = cost, best_m = a, best_n = b;
  }
  *tm = best_m;
  *tn = best_n;
}

struct Panel {
  const float* bp;  // packed B panel
  int64_t g0, jj0;  // column group of the first column, and its column in the group
  int nr;           // real columns
  bool whole;       // nr == NR, all of them real outputs of one column group, bias per row or none
  bool fits;        // the same with nr <= NR (the panel's real columns, stored with ColMask)
  bool narrow;
};

// The work of one thread: rows [m0, m1), columns [n0, n1).
template <class PackB>
void run_tile_range(int64_t M, int64_t K, const AView& A, const PackB& pack_b, const CView& C,
                    int64_t m0, int64_t m1, int64_t n0, int64_t n1, float* scratch) {
  float* bbuf = scratch;
  float* part = bbuf + KC_ONE * NC + NR;
  float* atail = part + (K > KC_ONE ? round_up(M, MR) * NC : 0);
  float* bt = atail + MR * KC_ONE;
  const StoreFn store = pick_store(C.e.act);
  const TileStoreFn store_whole = pick_tile_store(C.e.act);
  // One depth block with A packed or row-major: whole tiles go through kernel_store.
  const bool one_block = (A.packed || A.cs == 1) && K <= KC_ONE;
  const KernelStoreFn direct = one_block ? pick_kernel_store(C.e.act, A.packed) : nullptr;
  const KernelStoreFn direct_tail =  // the ragged last row panel's tiles
      one_block && M % MR ? pick_kernel_store(C.e.act, A.packed, tail_rows(static_cast<int>(M % MR))) : direct;
  alignas(64) float acc[MR * NR] = {};  // zeroed: a narrow panel leaves columns it does not use
  const bool arow = A.cs == 1 && !A.packed;
  // First row of the ragged panel (== M when none; packed A has its zero rows already).
  const int64_t mtail = A.packed ? M : M - M % MR;

  const int64_t kb = depth_block(K);
  // Short depth: a tile is little work and storing it the larger part, so each row panel sweeps all the
  // block's columns (MR output rows written front to back) instead of each panel visiting MC rows (MC row
  // streams at once). Same-process A/B, epyc2, 1 thread, in-model: MobileNetV2's 1x1 16 -> 96 at 112x112
  // 1.18 -> 0.81 ms, its 3x3 stem (K = 27) 0.74 -> 0.61 ms; K = 24 to 64 even, deeper K no better.
  const bool rows_outer = A.packed && K <= 64;
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kb) {
      const int64_t kc = std::min(kb, K - pc);
      const bool first = pc == 0, last = pc + kc == K;
      const float* bblk = pack_b(pc, kc, jc, nc, bbuf);  // bbuf, or where a prepacked B holds the block
      if (mtail < m1 && mtail >= m0) {  // ragged A panel: copied row-major, with zero rows
        const int64_t rows = M - mtail;
        for (int i = 0; i < MR; ++i)
          for (int64_t p = 0; p < kc; ++p)
            atail[i * kc + p] = i < rows ? A.p[(mtail + i) * A.rs + (pc + p) * A.cs] : 0.f;
      }
      // Each panel's facts, once per block (a 64-bit division per tile cost as much as a short micro-kernel).
      Panel panels[NC / NR];
      const int npanels = static_cast<int>(ceil_div(nc, NR));
      for (int q = 0; q < npanels; ++q) {
        Panel& P = panels[q];
        const int64_t jr = q * NR;
        P.bp = bblk + jr * kc;
        P.nr = static_cast<int>(std::min<int64_t>(NR, nc - jr));
        P.g0 = (jc + jr) / C.group_cols;  // column group of the panel's first column
        P.jj0 = (jc + jr) % C.group_cols;
        P.narrow = P.nr <= NARROW && (arow || A.packed);
        P.fits = !P.narrow && P.jj0 + P.nr <= C.group_valid && (!C.bias || C.bias_per_row);
        P.whole = P.fits && P.nr == NR;
        if (P.narrow)  // only the last panel: its columns, each contiguous in k
          for (int j = 0; j < P.nr; ++j)
            for (int64_t p = 0; p < kc; ++p) bt[j * kc + p] = P.bp[p * NR + j];
      }
      // One MR x NR tile: rows [ir, ir + MR) of panel P (its first column jr in the block).
      const auto tile = [&](const Panel& P, int64_t jr, int64_t ir) __attribute__((always_inline)) {
        const float* bp = P.bp;
        const int nr = P.nr;
        const int64_t g0 = P.g0, jj0 = P.jj0;
        const bool whole = P.whole, narrow = P.narrow;
        const int mr = static_cast<int>(std::min<int64_t>(MR, M - ir));
        if (direct && P.fits) {  // the epilogue in registers, straight into C
          const bool in_place = !A.packed && mr == MR;  // else packed A, or the ragged rows' copy in atail
          const float* ap = A.packed ? packed_panel(A.p, M, ir, pc, kc) : in_place ? A.p + ir * A.rs + pc : atail;
          const int64_t o = g0 * C.group_stride + ir * C.ldc + jj0;
          const KernelStoreFn f = mr == MR ? direct : direct_tail;
          f(kc, ap, A.packed ? 0 : in_place ? A.rs : kc, bp, C.c + o, C.ldc, C.res ? C.res + o : nullptr,
            C.bias ? C.bias + ir : nullptr, C.alpha, C.e, mr, nr);
          return;
        }
        if (narrow && A.packed) {
          narrow_kernel_packed(kc, packed_panel(A.p, M, ir, pc, kc), bt, nr, acc);
        } else if (narrow) {
          if (mr == MR)
            narrow_kernel(kc, A.p + ir * A.rs + pc, A.rs, bt, nr, acc);
          else
            narrow_kernel(kc, atail, kc, bt, nr, acc);
        } else if (A.packed) {
          micro_kernel<false, true>(kc, packed_panel(A.p, M, ir, pc, kc), 0, MR, bp, acc);
        } else if (mr == MR) {
          const float* ap = A.p + ir * A.rs + pc * A.cs;
          if (arow)
            micro_kernel<true>(kc, ap, A.rs, 1, bp, acc);
          else
            micro_kernel<false>(kc, ap, 1, A.cs, bp, acc);
        } else {
          // Row-major like atail: GCC compiles the column-major loop (ROW = false, runtime cs) with each A
          // value moved through a general register before its broadcast, at about 2/3 of the speed.
          micro_kernel<true>(kc, atail, kc, 1, bp, acc);
        }
        // Partial sums live in `part`, indexed by (row - m0, column - jc).
        float* pt = part + (ir - m0) * NC + jr;
        if (!last) {
          for (int i = 0; i < mr; ++i)
            for (int j = 0; j < NR; ++j)
              pt[i * NC + j] = first ? acc[i * NR + j] : pt[i * NC + j] + acc[i * NR + j];
          return;
        }
        if (!first)
          for (int i = 0; i < mr; ++i)
            for (int j = 0; j < NR; ++j) acc[i * NR + j] += pt[i * NC + j];
        if (whole && mr == MR) {
          const int64_t o = g0 * C.group_stride + ir * C.ldc + jj0;
          store_whole(acc, C.c + o, C.ldc, C.res ? C.res + o : nullptr, C.bias ? C.bias + ir : nullptr,
                      C.alpha, C.e);
          return;
        }
        // Split the tile's columns at column-group boundaries; drop the padding columns.
        int64_t j = jc + jr;
        const int64_t jend = j + nr;
        int off = 0;
        int64_t g = g0, jj = jj0;
        while (j < jend) {
          const int len = static_cast<int>(std::min(jend - j, C.group_cols - jj));
          if (jj < C.group_valid) {
            const int vlen = static_cast<int>(std::min<int64_t>(len, C.group_valid - jj));
            const int64_t o = g * C.group_stride + ir * C.ldc + jj;
            const float* br = C.bias && C.bias_per_row ? C.bias + ir : nullptr;
            const float* bcol = C.bias && !C.bias_per_row ? C.bias + j : nullptr;
            // The store reads acc rows with stride NR starting at column `off`.
            store(acc + off, mr, vlen, C.c + o, C.ldc, C.res ? C.res + o : nullptr, br, bcol,
                  C.alpha, C.e);
          }
          off += len;
          j += len;
          ++g;
          jj = 0;
        }
      };
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = std::min(MC, m1 - ic);
        if (rows_outer) {
          for (int64_t ir = ic; ir < ic + mc; ir += MR)
            for (int q = 0; q < npanels; ++q) tile(panels[q], q * NR, ir);
        } else {
          for (int q = 0; q < npanels; ++q)
            for (int64_t ir = ic; ir < ic + mc; ir += MR) tile(panels[q], q * NR, ir);
        }
      }
    }
  }
}

template <class PackB>
auto pack_cost_of(const PackB& p, int) -> decltype(p.pack_cost()) { return p.pack_cost(); }
template <class PackB>
double pack_cost_of(const PackB&, long) { return kPackCost; }
template <class PackB>
double pack_cost_of(const PackB& p) { return pack_cost_of(p, 0); }

// C = epi(A * B) with `threads` OpenMP threads; ws holds workspace_bytes(M, K, threads).
template <class PackB>
void gemm(int64_t M, int64_t N, int64_t K, const AView& A, const PackB& pack_b, const CView& C,
          void* ws, int threads) {
  int tm, tn;
  split_threads(M, N, threads, &tm, &tn, pack_cost_of(pack_b));
  const int used = tm * tn;
  float* base = align64(ws);
  const int64_t per = thread_scratch_floats(M, K);
  const int64_t mp = ceil_div(M, MR), np = ceil_div(N, NR);
#pragma omp parallel num_threads(used) if (used > 1)
  {
    const int t = omp_get_thread_num();
    const int ti = t / tn, tj = t % tn;
    const int64_t m0 = std::min(M, mp * ti / tm * MR), m1 = std::min(M, mp * (ti + 1) / tm * MR);
    const int64_t n0 = std::min(N, np * tj / tn * NR), n1 = std::min(N, np * (tj + 1) / tn * NR);
    if (m0 < m1 && n0 < n1) run_tile_range(M, K, A, pack_b, C, m0, m1, n0, n1, base + t * per);
  }
}

}  // namespace sgemm
}  // namespace ev
