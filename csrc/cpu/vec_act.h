// The epilogue activations on 8 lanes (GCC vector extensions; 16 with AVX-512), for the CPU stores that apply them to
// whole vectors: the SGEMM's tile stores and the elementwise kernels (activate_span). They agree with the scalar ev::activate of
// epilogue.h lane by lane to a few ulp (exactly for the compare-and-multiply ones), NaN included.
// GCC keeps expf/tanhf as scalar libm calls (no -ffast-math), which made a fused Tanh cost as much as
// the 3x3 convolution it ended (the DCGAN generator's last layer); exp8 is Cephes' expf polynomial.
// GELU (erf) has no vector form here and keeps the scalar call per lane.
#pragma once
#if defined(__AVX512F__)
#include <immintrin.h>  // store_epilogue16's masked moves
#endif

#include <cstdint>

#include "epilogue.h"

namespace ev {
namespace cpu {

typedef float vf8 __attribute__((vector_size(32)));
typedef int vi8 __attribute__((vector_size(32)));

template <Act ACT>
constexpr bool has_vector_act() {
  return ACT != Act::GELU;
}

// e^x, relative error within 2 ulp on [-87, 88]; below about -87.3 the result flushes to 0, above
// ln(FLT_MAX) it is +inf as expf's. NaN is the caller's to restore.
inline __attribute__((always_inline)) vf8 exp8(vf8 x) {
  const vf8 zero = {};
  const vi8 overflow = x > 88.72283905206835f;
  const vf8 hi = zero + 88.3762626647949f, lo = zero - 88.3762626647949f;
  x = x < hi ? x : hi;
  x = x > lo ? x : lo;
  // n = floor(x / ln 2 + 1/2), then x - n ln 2 in two parts (exact high part).
  vf8 fx = x * 1.44269504088896341f + 0.5f;
  vi8 n = __builtin_convertvector(fx, vi8);                 // truncates toward zero
  n += __builtin_convertvector(n, vf8) > fx;                // ... so step down (true is -1) where it rounded up
  fx = __builtin_convertvector(n, vf8);
  x = x - fx * 0.693359375f;
  x = x - fx * -2.12194440e-4f;
  const vf8 z = x * x;
  vf8 y = x * 1.9875691500e-4f + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * z + x + 1.f;
  // 2^n through the exponent bits; n >= -127 here, and n = -127 gives 0 (the flush above).
  const vi8 e = (n + 127) << 23;
  vf8 p;
  __builtin_memcpy(&p, &e, sizeof p);
  return overflow ? zero + __builtin_inff() : y * p;
}

// min(max(x, lo), hi) on any vector width (GCC vector extensions): NaN -> lo, as clamp_to.
template <class V>
inline __attribute__((always_inline)) V clamp_v(V x, V lo, V hi) {
  x = x > lo ? x : lo;
  return x < hi ? x : hi;
}

// The activations that are compares and multiplies (and None), on any vector width.
template <Act ACT>
constexpr bool is_piecewise_linear() {
  return ACT == Act::None || ACT == Act::ReLU || ACT == Act::LeakyReLU || ACT == Act::Clip ||
         ACT == Act::HardSwish || ACT == Act::HardSigmoid;
}

template <Act ACT, class V>
inline __attribute__((always_inline)) V activate_piecewise(V v, float al, float be) {
  const V zero = {};
  if constexpr (ACT == Act::ReLU) {
    return v > zero ? v : zero;
  } else if constexpr (ACT == Act::LeakyReLU) {
    return v >= zero ? v : v * al;
  } else if constexpr (ACT == Act::Clip) {
    return clamp_v(v, zero + al, zero + be);
  } else if constexpr (ACT == Act::HardSwish) {
    return v * clamp_v(v + 3.f, zero, zero + 6.f) * (1.f / 6.f);
  } else if constexpr (ACT == Act::HardSigmoid) {
    return clamp_v(v * al + be, zero, zero + 1.f);
  } else {
    return v;
  }
}

template <Act ACT>
inline __attribute__((always_inline)) vf8 activate8(vf8 v, float al, float be) {
  const vf8 zero = {};
  if constexpr (is_piecewise_linear<ACT>()) {
    return activate_piecewise<ACT>(v, al, be);
  } else if constexpr (ACT == Act::Sigmoid || ACT == Act::SiLU) {
    vf8 s = 1.f / (1.f + exp8(-v));
    if constexpr (ACT == Act::SiLU) s = v * s;
    return v != v ? v : s;
  } else if constexpr (ACT == Act::Tanh) {
    // Small |v|: Cephes' tanhf polynomial ((1 - e)/(1 + e) would lose digits to cancellation there);
    // otherwise tanh |v| from e^(-2|v|) <= 1, which cannot overflow, with the sign put back.
    const vf8 a = v < zero ? -v : v;
    const vf8 z = v * v;
    vf8 p = z * -5.70498872745e-3f + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const vf8 small = p * z * v + v;
    const vf8 e = exp8(-2.f * a);
    vf8 big = (1.f - e) / (1.f + e);
    big = v < zero ? -big : big;
    const vf8 t = a < 0.625f ? small : big;
    return (v != v) | (v == zero) ? v : t;  // NaN, and zero with its sign
  } else if constexpr (ACT == Act::GELU) {
    for (int i = 0; i < 8; ++i) v[i] = activate(v[i], ACT, al, be);
    return v;
  } else {
    return v;
  }
}

// y[i] = activate(x[i]) for n floats at any alignment; y may be x (in place). The last partial vector
// goes through the same vector code (zero-padded), so every element gets the same arithmetic wherever a
// split puts it.
template <Act ACT>
inline void activate_span(const float* x, float* y, int64_t n, float al, float be) {
  if constexpr (ACT == Act::None) {
    if (x != y)
      for (int64_t i = 0; i < n; ++i) y[i] = x[i];
    return;
  }
  typedef float vf8u __attribute__((vector_size(32), aligned(4)));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    *reinterpret_cast<vf8u*>(y + i) = activate8<ACT>(*reinterpret_cast<const vf8u*>(x + i), al, be);
  if (i < n) {
    vf8 t = {};
    for (int64_t j = i; j < n; ++j) t[j - i] = x[j];
    t = activate8<ACT>(t, al, be);
    for (int64_t j = i; j < n; ++j) y[j] = t[j - i];
  }
}

#if defined(__AVX512F__)
typedef float vf16 __attribute__((vector_size(64)));

// activate8 on 16 lanes: the piecewise-linear ones directly, the others on the two halves (the AVX-512 kernels'
// stores to NCHW rows).
template <Act ACT>
inline __attribute__((always_inline)) vf16 activate16(vf16 v, float al, float be) {
  if constexpr (is_piecewise_linear<ACT>()) {
    return activate_piecewise<ACT>(v, al, be);
  } else {
    const vf8 lo = activate8<ACT>(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), al, be);
    const vf8 hi = activate8<ACT>(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), al, be);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
}

// Stores the lanes m of v (bias already added) to y through the activation, with the residual at res (when given)
// added before or after it as e says: the AVX-512 conv kernels' stores to NCHW rows.
template <Act ACT>
inline __attribute__((always_inline)) void store_epilogue16(float* y, const float* res, vf16 v, __mmask16 m,
                                                            const Epilogue& e) {
  if (res) {
    const vf16 r = _mm512_maskz_loadu_ps(m, res);
    v = e.residual_after_act ? activate16<ACT>(v, e.alpha, e.beta) + r : activate16<ACT>(v + r, e.alpha, e.beta);
  } else {
    v = activate16<ACT>(v, e.alpha, e.beta);
  }
  _mm512_mask_storeu_ps(y, m, v);
}
#endif

}  // namespace cpu
}  // namespace ev
