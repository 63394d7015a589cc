// gemm: the reference loops, the fast path (blocked SGEMM from sgemm.h, or a dot/axpy kernel when
// there are too few rows to fill a register tile, as in linear layers at batch 1), and
// cpu_peak_gflops, the FMA microbenchmark the op benchmark divides by.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "cpu/sgemm.h"
#include "epilogue.h"
#include "ops.h"

namespace ev {

namespace {

inline float a_at(const GemmShape& s, const float* a, int64_t i, int64_t p) {
  return s.trans_a ? a[p * s.m + i] : a[i * s.k + p];
}
inline float b_at(const GemmShape& s, const float* b, int64_t p, int64_t j) {
  return s.trans_b ? b[j * s.k + p] : b[p * s.n + j];
}

// Below this many rows the 6-row register tile would mostly multiply zeros and packing B would
// cost as much as the product: use the row-at-a-time kernels instead.
constexpr int64_t kSmallM = 4;

// B packer for a plain matrix: NR-wide panels, zero-padded past column j0 + nl.
struct MatrixPackB {
  const float* b;
  int64_t n, k;
  bool trans;
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    using sgemm::NR;
    for (int64_t q = 0; q * NR < nl; ++q) {
      float* d = dst + q * kl * NR;
      const int64_t jb = j0 + q * NR;
      const int len = static_cast<int>(std::min<int64_t>(NR, nl - q * NR));
      if (!trans) {
        for (int64_t p = 0; p < kl; ++p) {
          const float* src = b + (k0 + p) * n + jb;
          float* dp = d + p * NR;
          std::memcpy(dp, src, len * sizeof(float));
          for (int j = len; j < NR; ++j) dp[j] = 0.f;
        }
      } else {
        for (int j = 0; j < NR; ++j) {
          if (j < len) {
            const float* src = b + (jb + j) * k + k0;
            for (int64_t p = 0; p < kl; ++p) d[p * NR + j] = src[p];
          } else {
            for (int64_t p = 0; p < kl; ++p) d[p * NR + j] = 0.f;
          }
        }
      }
    }
    return dst;
  }
};

// A constant b packed once (gemm_cpu_pack_b): per depth block (sgemm::depth_block(k) deep, the last one
// shorter), all ceil(n / NR) panels as MatrixPackB writes them, so block (pc, j0) is read where it lies.
inline int64_t padded_n(const GemmShape& s) { return sgemm::round_up(s.n, sgemm::NR); }

struct PrepackedB {
  const float* packed;
  int64_t npad;
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    return packed + k0 * npad + j0 * kl;  // j0 is a multiple of NR: panel j0 / NR of the block
  }
};

using sgemm::kWideLanes;
using sgemm::vwide;
using sgemm::vwideu;

inline float hsum(vwide v) {
  float t = 0.f;
  for (int i = 0; i < kWideLanes; ++i) t += v[i];
  return t;
}

// out[r] = <x, b + r * ldb> for r < 4: four rows of B per pass share every load of x (a batch-1 linear layer
// streams B once, so fewer loads per multiply-add is what its time depends on). Two chains per row keep the
// multiply-adds from waiting on each other.
inline void dot4(const float* __restrict x, const float* __restrict b, int64_t ldb, int64_t k, float* out) {
  const float *b0 = b, *b1 = b + ldb, *b2 = b + 2 * ldb, *b3 = b + 3 * ldb;
  vwide s0 = {}, s1 = {}, s2 = {}, s3 = {}, t0 = {}, t1 = {}, t2 = {}, t3 = {};
  constexpr int L = kWideLanes;
  const auto ld = [](const float* p) -> vwide { return *reinterpret_cast<const vwideu*>(p); };
  int64_t p = 0;
  for (; p + 2 * L <= k; p += 2 * L) {
    const vwide x0 = ld(x + p), x1 = ld(x + p + L);
    s0 += x0 * ld(b0 + p); t0 += x1 * ld(b0 + p + L);
    s1 += x0 * ld(b1 + p); t1 += x1 * ld(b1 + p + L);
    s2 += x0 * ld(b2 + p); t2 += x1 * ld(b2 + p + L);
    s3 += x0 * ld(b3 + p); t3 += x1 * ld(b3 + p + L);
  }
  if (p + L <= k) {
    const vwide x0 = ld(x + p);
    s0 += x0 * ld(b0 + p); s1 += x0 * ld(b1 + p); s2 += x0 * ld(b2 + p); s3 += x0 * ld(b3 + p);
    p += L;
  }
  float r0 = hsum(s0 + t0), r1 = hsum(s1 + t1), r2 = hsum(s2 + t2), r3 = hsum(s3 + t3);
  for (; p < k; ++p) {
    r0 += x[p] * b0[p]; r1 += x[p] * b1[p]; r2 += x[p] * b2[p]; r3 += x[p] * b3[p];
  }
  out[0] = r0; out[1] = r1; out[2] = r2; out[3] = r3;
}

inline float dot(const float* __restrict x, const float* __restrict y, int64_t k) {
  constexpr int L = kWideLanes;
  const auto ld = [](const float* p) -> vwide { return *reinterpret_cast<const vwideu*>(p); };
  vwide s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t p = 0;
  for (; p + 4 * L <= k; p += 4 * L) {
    s0 += ld(x + p) * ld(y + p);
    s1 += ld(x + p + L) * ld(y + p + L);
    s2 += ld(x + p + 2 * L) * ld(y + p + 2 * L);
    s3 += ld(x + p + 3 * L) * ld(y + p + 3 * L);
  }
  for (; p + L <= k; p += L) s0 += ld(x + p) * ld(y + p);
  float t = hsum((s0 + s1) + (s2 + s3));
  for (; p < k; ++p) t += x[p] * y[p];
  return t;
}

// m <= kSmallM rows. ws holds m * k floats for a row-major copy of A when it comes transposed.
void gemm_small_m(const GemmShape& s, const float* a, const float* b, const float* bias,
                  const float* res, float* y, const Epilogue& e, float* ws) {
  const int64_t m = s.m, n = s.n, k = s.k;
  const float* ar = a;
  if (s.trans_a) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) ws[i * k + p] = a[p * m + i];
    ar = ws;
  }
  const int threads = omp_get_max_threads();
  if (s.trans_b) {
    // y[i, j] = <A row i, B row j>: every B row is read once, for all m rows of A.
    // Four B rows per task (dot4); the last n % 4 one by one.
    const int64_t quads = n / 4;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * k > 32768)
    for (int64_t q = 0; q < quads + n % 4; ++q) {
      const int64_t j0 = q < quads ? 4 * q : 4 * quads + (q - quads), cnt = q < quads ? 4 : 1;
      for (int64_t i = 0; i < m; ++i) {
        float d[4];
        if (cnt == 4)
          dot4(ar + i * k, b + j0 * k, k, k, d);
        else
          d[0] = dot(ar + i * k, b + j0 * k, k);
        for (int64_t j = j0; j < j0 + cnt; ++j)
          y[i * n + j] = apply_epilogue(s.alpha * d[j - j0], bias ? bias[j] : 0.f, res ? res[i * n + j] : 0.f, e);
      }
    }
    return;
  }
  // y[i, cols] = sum_p A[i, p] * B[p, cols]: axpy over a column chunk kept in registers/L1.
  constexpr int64_t CH = 256;
  const int64_t chunks = (n + CH - 1) / CH;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * k > 32768)
  for (int64_t q = 0; q < chunks; ++q) {
    const int64_t j0 = q * CH, len = std::min(CH, n - j0);
    float acc[kSmallM][CH];
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < len; ++j) acc[i][j] = 0.f;
    for (int64_t p = 0; p < k; ++p) {
      const float* bp = b + p * n + j0;
      for (int64_t i = 0; i < m; ++i) {
        const float av = ar[i * k + p];
        float* ai = acc[i];
        for (int64_t j = 0; j < len; ++j) ai[j] += av * bp[j];
      }
    }
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < len; ++j)
        y[i * n + j0 + j] = apply_epilogue(s.alpha * acc[i][j], bias ? bias[j0 + j] : 0.f,
                                           res ? res[i * n + j0 + j] : 0.f, e);
  }
}

}  // namespace

void gemm_ref(const GemmShape& s, const float* a, const float* b, const float* bias,
              const float* residual, float* y, const Epilogue& e) {
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      float acc = 0.f;
      for (int64_t p = 0; p < s.k; ++p) acc += a_at(s, a, i, p) * b_at(s, b, p, j);
      y[i * s.n + j] = apply_epilogue(s.alpha * acc, bias ? bias[j] : 0.f,
                                      residual ? residual[i * s.n + j] : 0.f, e);
    }
}

size_t gemm_cpu_workspace(const GemmShape& s) {
  if (s.m <= kSmallM) return static_cast<size_t>(s.m * s.k) * sizeof(float);
  return sgemm::workspace_bytes(s.m, s.k, omp_get_max_threads());
}

int64_t gemm_cpu_packed_b_floats(const GemmShape& s) { return s.m <= kSmallM ? 0 : padded_n(s) * s.k; }

void gemm_cpu_pack_b(const GemmShape& s, const float* b, float* packed) {
  if (gemm_cpu_packed_b_floats(s) == 0) return;
  const MatrixPackB pb{b, s.n, s.k, s.trans_b};
  const int64_t kb = sgemm::depth_block(s.k);
  for (int64_t pc = 0; pc < s.k; pc += kb) pb(pc, std::min(kb, s.k - pc), 0, s.n, packed + pc * padded_n(s));
}

void gemm_cpu(const GemmShape& s, const float* a, const float* b, const float* bias,
              const float* residual, float* y, const Epilogue& e, void* workspace, const float* packed_b) {
  if (s.m <= kSmallM) {
    gemm_small_m(s, a, b, bias, residual, y, e, static_cast<float*>(workspace));
    return;
  }
  const sgemm::AView av{a, s.trans_a ? 1 : s.k, s.trans_a ? s.m : 1};
  const sgemm::CView cv{y, s.n, s.n, s.n, 0, bias, false, residual, s.alpha, e};
  if (packed_b) {
    sgemm::gemm(s.m, s.n, s.k, av, PrepackedB{packed_b, padded_n(s)}, cv, workspace, omp_get_max_threads());
    return;
  }
  sgemm::gemm(s.m, s.n, s.k, av, MatrixPackB{b, s.n, s.k, s.trans_b}, cv, workspace, omp_get_max_threads());
}

// FP32 peak: every thread runs 12 independent FMA chains on the widest vectors the kernels use (16 lanes
// with AVX-512, else 8), enough to cover the FMA latency times the number of FMA pipes on current x86 and
// Arm cores. Without -ffast-math the compiler may not reassociate the chains, so what runs is exactly
// 12 * lanes FMAs per iteration.
double cpu_peak_gflops(int threads) {
  if (threads < 1) threads = omp_get_max_threads();
  volatile float seed = 1.0f;
  const int64_t iters = 4 << 20;
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0.f;
    const double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      const float s0 = seed;
      vwide m = {}, c = {};
      m += 0.999999f * s0;
      c += 1e-7f * s0;
      // Distinct starting values: twelve chains from one value are one computation, which GCC keeps only
      // once. Until 2026-11-26 the loop was one latency-bound multiply-add per iteration counted as twelve,
      // 12 / (4-cycle latency x 2 pipes) = 1.5x the real peak (Xeon VM: 255 reported, 156-171 real).
      vwide x0 = m, x1 = m + c, x2 = m + 2 * c, x3 = m + 3 * c, x4 = m + 4 * c, x5 = m + 5 * c;
      vwide x6 = m + 6 * c, x7 = m + 7 * c, x8 = m + 8 * c, x9 = m + 9 * c, x10 = m + 10 * c, x11 = m + 11 * c;
      for (int64_t i = 0; i < iters; ++i) {
        x0 = x0 * m + c; x1 = x1 * m + c; x2 = x2 * m + c; x3 = x3 * m + c;
        x4 = x4 * m + c; x5 = x5 * m + c; x6 = x6 * m + c; x7 = x7 * m + c;
        x8 = x8 * m + c; x9 = x9 * m + c; x10 = x10 * m + c; x11 = x11 * m + c;
      }
      const vwide t = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)) + ((x8 + x9) + (x10 + x11));
      for (int i = 0; i < kWideLanes; ++i) sink += t[i];
    }
    const double dt = omp_get_wtime() - t0;
    volatile float keep = sink;  // the chains' result is used, so they are computed
    (void)keep;
    best = std::max(best, 2.0 * kWideLanes * 12 * double(iters) * threads / dt * 1e-9);
  }
  return best;
}

}  // namespace ev
