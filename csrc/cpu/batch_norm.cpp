// batch_norm in inference form (running statistics) with an optional activation, CPU reference and
// fast path. The fast path folds gamma / sqrt(var + eps) into one factor per channel but keeps the
// mean subtraction separate, (x - mean) * k + beta: folding the mean into the shift as well
// (x * k + (beta - mean * k)) cancels catastrophically when |mean| is large next to x - mean.
#include <algorithm>
#include <cmath>

#include "ops.h"
#include "cpu/pointwise.h"

namespace ev {
namespace {

template <Act A>
void bn_range(const BatchNormShape& s, const float* x, const float* gamma, const float* beta,
              const float* mean, const float* var, float* y, int64_t begin, int64_t end,
              float alpha, float act_beta) {
  // [begin, end) is a range of the flat [n * c, hw] index, walked one channel plane at a time.
  int64_t pos = begin;
  while (pos < end) {
    const int64_t plane = pos / s.hw, c = plane % s.c;
    const int64_t stop = std::min(end, (plane + 1) * s.hw);
    const float k = gamma[c] / std::sqrt(var[c] + s.eps), m = mean[c], b = beta[c];
    for (int64_t i = pos; i < stop; ++i) y[i] = activate((x[i] - m) * k + b, A, alpha, act_beta);
    pos = stop;
  }
}

// hw == 1 ([n, c] input): rows of c channels, each channel with its own factor.
template <Act A>
void bn_rows(const BatchNormShape& s, const float* x, const float* gamma, const float* beta,
             const float* mean, const float* var, float* y, int64_t r0, int64_t r1, float alpha,
             float act_beta) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * s.c;
    float* yr = y + r * s.c;
    for (int64_t c = 0; c < s.c; ++c) {
      const float k = gamma[c] / std::sqrt(var[c] + s.eps);
      yr[c] = activate((xr[c] - mean[c]) * k + beta[c], A, alpha, act_beta);
    }
  }
}

}  // namespace

void batch_norm_ref(const BatchNormShape& s, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* var, float* y, const Epilogue& e) {
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.hw; ++i) {
        const int64_t j = (n * s.c + c) * s.hw + i;
        const float v = (x[j] - mean[c]) / std::sqrt(var[c] + s.eps) * gamma[c] + beta[c];
        y[j] = activate(v, e.act, e.alpha, e.beta);
      }
}

void batch_norm_cpu(const BatchNormShape& s, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* var, float* y, const Epilogue& e) {
  const int64_t total = s.n * s.c * s.hw;
  if (total <= 0) return;
  cpu::with_act(e.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
#pragma omp parallel if (total >= cpu::kMinParallel)
    {
      int64_t begin, end;
      if (s.hw == 1) {
        cpu::thread_range(s.n, &begin, &end);
        bn_rows<A>(s, x, gamma, beta, mean, var, y, begin, end, e.alpha, e.beta);
      } else {
        cpu::thread_range(total, &begin, &end);
        bn_range<A>(s, x, gamma, beta, mean, var, y, begin, end, e.alpha, e.beta);
      }
    }
  });
}

}  // namespace ev
