// gemm: y[m, n] = act(alpha * op(a) @ op(b) + bias[n] [+ residual[m, n]]), op = optional
// transpose, row-major storage (see ops.h / epilogue.h).
//
// Launch shape: tiles of 64 x 64 x 16 staged in shared memory (FP16 converted to FP32 on the way
// in), 256 threads, each accumulating a 4 x 4 micro-tile in registers whose columns are strided by
// 16 so a warp's stores to y cover runs of 16 consecutive elements (coalesced) and its shared-memory
// reads are conflict-free. The next K tile is fetched into registers while the current one is
// multiplied. Each operand tile is loaded along its contiguous axis (k for a / b^T, m for a^T, n for
// b), which the TA / TB template arguments select. Grid: x = M tiles, y = N tiles (grid-stride,
// capped at 65535). The epilogue runs in the store.
// Later versions: tensor cores (mma.sync FP16/TF32), cp.async double buffering, 128 x 128 tiles with
// 8 x 8 micro-tiles for large problems, split-K for small m * n with large k.
#include "cuda/common.cuh"

namespace ev {
namespace {

constexpr int kThreads = 256;
constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
constexpr int kLoads = BK * BM / kThreads;  // elements of each operand tile per thread (BM == BN)

struct GemmArgs {
  int m, n, k;
  float alpha;
};

// Element (kk, dd) of a BK x BD operand tile is src[d * ld + kk] when k is the contiguous axis, else
// src[kk * ld + d]. Threads walk the contiguous axis fastest so each warp's loads coalesce; the same
// (kk, dd) mapping is used to store the registers into shared memory.
template <bool kContig>
__device__ __forceinline__ void tile_coords(int tid, int q, int& kk, int& dd) {
  if (kContig) {
    kk = tid % BK;
    dd = tid / BK + q * (kThreads / BK);
  } else {
    dd = tid % BM;
    kk = tid / BM + q * (kThreads / BM);
  }
}

template <typename T, bool kContig>
__device__ __forceinline__ void fetch_tile(const T* __restrict__ src, int ld, int k0, int d0,
                                           int k_total, int d_total, int tid,
                                           float (&reg)[kLoads]) {
#pragma unroll
  for (int q = 0; q < kLoads; ++q) {
    int kk, dd;
    tile_coords<kContig>(tid, q, kk, dd);
    const int kg = k0 + kk, dg = d0 + dd;
    float v = 0.f;
    if (kg < k_total && dg < d_total) v = cuda::ld(src + (kContig ? dg * ld + kg : kg * ld + dg));
    reg[q] = v;
  }
}

template <bool kContig>
__device__ __forceinline__ void store_tile(float (*tile)[BM + 1], int tid,
                                           const float (&reg)[kLoads]) {
#pragma unroll
  for (int q = 0; q < kLoads; ++q) {
    int kk, dd;
    tile_coords<kContig>(tid, q, kk, dd);
    tile[kk][dd] = reg[q];
  }
}

// TA: a is stored [k, m]; TB: b is stored [n, k].
template <typename T, bool TA, bool TB>
__global__ void gemm_kernel(GemmArgs g, const T* __restrict__ a, const T* __restrict__ b,
                            const T* __restrict__ bias, const T* __restrict__ residual,
                            T* __restrict__ y, Epilogue e) {
  // +1 column: the k-fastest tile stores would otherwise hit one bank.
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int m0 = blockIdx.x * BM;
  // a as stored: [m, k] is k-contiguous with ld = k; [k, m] is m-contiguous with ld = m.
  constexpr bool kA = !TA;
  constexpr bool kB = TB;
  const int lda = TA ? g.m : g.k;
  const int ldb = TB ? g.k : g.n;
  const int n_tiles = (g.n + BN - 1) / BN;

  for (int nt = blockIdx.y; nt < n_tiles; nt += gridDim.y) {
    const int n0 = nt * BN;
    float a_reg[kLoads], b_reg[kLoads];
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    fetch_tile<T, kA>(a, lda, 0, m0, g.k, g.m, tid, a_reg);
    fetch_tile<T, kB>(b, ldb, 0, n0, g.k, g.n, tid, b_reg);
    for (int k0 = 0; k0 < g.k; k0 += BK) {
      store_tile<kA>(As, tid, a_reg);
      store_tile<kB>(Bs, tid, b_reg);
      __syncthreads();
      if (k0 + BK < g.k) {
        fetch_tile<T, kA>(a, lda, k0 + BK, m0, g.k, g.m, tid, a_reg);
        fetch_tile<T, kB>(b, ldb, k0 + BK, n0, g.k, g.n, tid, b_reg);
      }
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        float av[TM], bv[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) av[i] = As[kk][ty + i * (BM / TM)];
#pragma unroll
        for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + j * (BN / TN)];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int row = m0 + ty + i * (BM / TM);
      if (row >= g.m) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int col = n0 + tx + j * (BN / TN);
        if (col >= g.n) continue;
        const int off = row * g.n + col;
        const float bv = bias ? cuda::ld(bias + col) : 0.f;
        const float rv = residual ? cuda::ld(residual + off) : 0.f;
        cuda::st(y + off, cuda::epilogue_call(g.alpha * acc[i][j], bv, rv, e));
      }
    }
  }
}

template <typename T, bool TA, bool TB>
void launch(const GemmArgs& g, const T* a, const T* b, const T* bias, const T* residual, T* y,
            const Epilogue& e, cudaStream_t st) {
  const int n_tiles = (g.n + BN - 1) / BN;
  const dim3 grid(static_cast<unsigned>((g.m + BM - 1) / BM),
                  static_cast<unsigned>(n_tiles < 65535 ? n_tiles : 65535));
  gemm_kernel<T, TA, TB><<<grid, kThreads, 0, st>>>(g, a, b, bias, residual, y, e);
}

}  // namespace

void gemm_cuda(const GemmShape& s, DType dt, const void* a, const void* b, const void* bias,
               const void* residual, void* y, const Epilogue& e, Stream stream) {
  static_assert(BM == BN && BK * BM % kThreads == 0, "tile loaders assume square M/N tiles");
  cuda::to_int(s.m * s.n, "gemm output elements");
  cuda::to_int(s.m * s.k, "gemm a elements");
  cuda::to_int(s.k * s.n, "gemm b elements");
  // The last M tile's rows (up to BM - 1 past m) are computed, then masked.
  cuda::to_int(s.m + BM, "gemm m");
  if (s.m <= 0 || s.n <= 0) return;
  const GemmArgs g{static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), s.alpha};
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "gemm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    const T* pbias = static_cast<const T*>(bias);
    const T* pr = static_cast<const T*>(residual);
    T* py = static_cast<T*>(y);
    if (s.trans_a && s.trans_b)
      launch<T, true, true>(g, pa, pb, pbias, pr, py, e, st);
    else if (s.trans_a)
      launch<T, true, false>(g, pa, pb, pbias, pr, py, e, st);
    else if (s.trans_b)
      launch<T, false, true>(g, pa, pb, pbias, pr, py, e, st);
    else
      launch<T, false, false>(g, pa, pb, pbias, pr, py, e, st);
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
