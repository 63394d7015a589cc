// Broadcasting binary ops (add, sub, mul, div, with an optional activation) and the standalone
// activation, CPU reference and fast paths.
//
// The fast binary path first coalesces the iteration space: size-1 dims are dropped and neighbouring
// dims merged wherever both operands are laid out contiguously across them. The common graph
// patterns then collapse to a few rows with a simple innermost loop: same-shape tensors to one
// contiguous row, a scalar to one row with b stride 0, a per-channel vector [1, C, 1, 1] to rows of
// H * W with b constant along each, and squeeze-excite [N, C, H, W] * [N, C, 1, 1] to N * C rows of
// H * W. Everything else runs the same row walker with strided inner loops.
#include <algorithm>

#include "ops.h"
#include "cpu/pointwise.h"
#include "cpu/vec_act.h"

namespace ev {
namespace {

template <BinaryOp OP>
inline float bop(float a, float b) {
  if (OP == BinaryOp::Add) return a + b;
  if (OP == BinaryOp::Sub) return a - b;
  if (OP == BinaryOp::Mul) return a * b;
  return a / b;
}

inline float bop(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.f;
}

// The iteration space with size-1 dims dropped and contiguous neighbours merged; at least one dim.
struct Coalesced {
  int nd = 0;
  int64_t shape[kMaxDims];
  int64_t as[kMaxDims];
  int64_t bs[kMaxDims];
};

Coalesced coalesce(const BinaryShape& s) {
  Coalesced c;
  for (int i = 0; i < s.ndim; ++i) {
    if (s.shape[i] == 1) continue;
    if (c.nd > 0) {
      const int k = c.nd - 1;
      if (c.as[k] == s.a_strides[i] * s.shape[i] && c.bs[k] == s.b_strides[i] * s.shape[i]) {
        c.shape[k] *= s.shape[i];
        c.as[k] = s.a_strides[i];
        c.bs[k] = s.b_strides[i];
        continue;
      }
    }
    c.shape[c.nd] = s.shape[i];
    c.as[c.nd] = s.a_strides[i];
    c.bs[c.nd] = s.b_strides[i];
    ++c.nd;
  }
  if (c.nd == 0) {
    c.nd = 1;
    c.shape[0] = 1;
    c.as[0] = c.bs[0] = 0;
  }
  return c;
}

// One row of the innermost dim: y[i] = a[i * sa] op b[i * sb]. The unit/zero-stride cases are
// separate loops so the compiler vectorises them.
template <BinaryOp OP>
inline void binary_row(const float* a, const float* b, float* y, int64_t n, int64_t sa,
                       int64_t sb) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i) y[i] = bop<OP>(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const float bv = *b;
    for (int64_t i = 0; i < n; ++i) y[i] = bop<OP>(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const float av = *a;
    for (int64_t i = 0; i < n; ++i) y[i] = bop<OP>(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = bop<OP>(a[i * sa], b[i * sb]);
  }
}

// Computes output elements [begin, end) of the coalesced space, row by row.
template <BinaryOp OP, Act A>
void binary_range(const Coalesced& c, const float* a, const float* b, float* y, int64_t begin,
                  int64_t end, float alpha, float beta) {
  if (begin >= end) return;
  const int last = c.nd - 1;
  const int64_t inner = c.shape[last];
  int64_t idx[kMaxDims] = {0};
  int64_t row = begin / inner, j = begin % inner;
  int64_t ao = 0, bo = 0;
  for (int d = last - 1; d >= 0; --d) {
    idx[d] = row % c.shape[d];
    row /= c.shape[d];
    ao += idx[d] * c.as[d];
    bo += idx[d] * c.bs[d];
  }
  int64_t pos = begin;
  while (pos < end) {
    const int64_t len = std::min(inner - j, end - pos);
    binary_row<OP>(a + ao + j * c.as[last], b + bo + j * c.bs[last], y + pos, len, c.as[last],
                   c.bs[last]);
    cpu::activate_span<A>(y + pos, y + pos, len, alpha, beta);
    pos += len;
    j = 0;
    for (int d = last - 1; d >= 0; --d) {  // odometer step over the outer dims
      ao += c.as[d];
      bo += c.bs[d];
      if (++idx[d] < c.shape[d]) break;
      ao -= idx[d] * c.as[d];
      bo -= idx[d] * c.bs[d];
      idx[d] = 0;
    }
  }
}

template <BinaryOp OP>
void binary_dispatch(const Coalesced& c, int64_t total, const float* a, const float* b, float* y,
                     const Epilogue& e) {
  cpu::with_act(e.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
#pragma omp parallel if (total >= cpu::kMinParallel)
    {
      int64_t begin, end;
      cpu::thread_range(total, &begin, &end);
      binary_range<OP, A>(c, a, b, y, begin, end, e.alpha, e.beta);
    }
  });
}

}  // namespace

void binary_ref(const BinaryShape& s, const float* a, const float* b, float* y,
                const Epilogue& e) {
  const int64_t total = s.numel();
  for (int64_t i = 0; i < total; ++i) {
    int64_t rem = i, ao = 0, bo = 0;
    for (int d = s.ndim - 1; d >= 0; --d) {
      const int64_t k = rem % s.shape[d];
      rem /= s.shape[d];
      ao += k * s.a_strides[d];
      bo += k * s.b_strides[d];
    }
    y[i] = activate(bop(s.op, a[ao], b[bo]), e.act, e.alpha, e.beta);
  }
}

void binary_cpu(const BinaryShape& s, const float* a, const float* b, float* y,
                const Epilogue& e) {
  const int64_t total = s.numel();
  if (total <= 0) return;
  const Coalesced c = coalesce(s);
  switch (s.op) {
    case BinaryOp::Add: return binary_dispatch<BinaryOp::Add>(c, total, a, b, y, e);
    case BinaryOp::Sub: return binary_dispatch<BinaryOp::Sub>(c, total, a, b, y, e);
    case BinaryOp::Mul: return binary_dispatch<BinaryOp::Mul>(c, total, a, b, y, e);
    case BinaryOp::Div: return binary_dispatch<BinaryOp::Div>(c, total, a, b, y, e);
  }
}

void activation_ref(int64_t numel, const float* x, float* y, const Epilogue& e) {
  for (int64_t i = 0; i < numel; ++i) y[i] = activate(x[i], e.act, e.alpha, e.beta);
}

void activation_cpu(int64_t numel, const float* x, float* y, const Epilogue& e) {
  if (numel <= 0) return;
  cpu::with_act(e.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
#pragma omp parallel if (numel >= cpu::kMinParallel)
    {
      int64_t begin, end;
      cpu::thread_range(numel, &begin, &end);
      cpu::activate_span<A>(x + begin, y + begin, end - begin, e.alpha, e.beta);
    }
  });
}

}  // namespace ev
