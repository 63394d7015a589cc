// The fused epilogue as one inline function, shared by every CPU and CUDA kernel so the activation
// formulas exist exactly once. EV_HD makes it callable from device code when compiled by nvcc.
#pragma once
#include <cmath>

#include "ops.h"

#if defined(__CUDACC__)
#define EV_HD __host__ __device__ __forceinline__
#else
#define EV_HD inline
#endif

namespace ev {

// min(max(v, lo), hi) with the results of fminf(fmaxf(v, lo), hi) for every v, NaN included (NaN -> lo),
// written as comparisons because GCC keeps libm's fminf/fmaxf as scalar calls without -ffinite-math-only:
// they made a Clip (ReLU6) epilogue cost 5x the 1x1 convolution it followed.
EV_HD float clamp_to(float v, float lo, float hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

EV_HD float activate(float v, Act act, float alpha, float beta) {
  switch (act) {
    case Act::None: return v;
    case Act::ReLU: return v > 0.f ? v : 0.f;
    case Act::LeakyReLU: return v >= 0.f ? v : alpha * v;
    case Act::Clip: return clamp_to(v, alpha, beta);
    case Act::Sigmoid: return 1.f / (1.f + expf(-v));
    case Act::Tanh: return tanhf(v);
    case Act::SiLU: return v / (1.f + expf(-v));
    case Act::HardSwish: return v * clamp_to(v + 3.f, 0.f, 6.f) * (1.f / 6.f);
    case Act::GELU: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case Act::HardSigmoid: return clamp_to(alpha * v + beta, 0.f, 1.f);
  }
  return v;
}

// acc: the raw accumulator; bias_v: bias for this output channel (0 if none); res: residual value
// (0 if none).
EV_HD float apply_epilogue(float acc, float bias_v, float res, const Epilogue& e) {
  if (e.residual_after_act) return activate(acc + bias_v, e.act, e.alpha, e.beta) + res;
  return activate(acc + bias_v + res, e.act, e.alpha, e.beta);
}

}  // namespace ev
