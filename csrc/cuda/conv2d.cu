// conv2d with the fused epilogue y = act(conv(x, w) + bias [+ residual]) (see ops.h / epilogue.h).
//
// Two kernels:
//   Implicit GEMM (any groups): per group g, Y_g[M, N] = A[M, K] * B[K, N] with M = n * out_h *
//     out_w (output pixels), N = k / groups (output channels of the group), K = (c / groups) * r * s.
//     A is the im2col matrix, never materialized: each element's (ci, kh, kw) and input pixel are
//     computed on the fly, padding read as 0. B is the weight tensor as stored ([k, K] row-major).
//     Tiles of BM x BN x 16 are staged in shared memory (FP16 converted to FP32 on the way in); each
//     of the 256 threads accumulates a TM x TN micro-tile in registers; the next K tile is fetched
//     into registers while the current one is multiplied. The epilogue runs in the store.
//       wide   (N > 16):  BM = 64,  BN = 64, TM = 4, TN = 4
//       narrow (N <= 16): BM = 128, BN = 16, TM = 8, TN = 1  (e.g. RGB output layers)
//     A thread's micro-tile rows are strided by BM / TM, so a warp's stores cover runs of 16
//     consecutive output pixels (coalesced) and its shared-memory reads are conflict-free.
//     1x1 kernels take a template path without the (ci, kh, kw) divisions.
//     Grid: x = M tiles; y = N tiles and z = groups, both grid-stride (capped at 65535).
//   Depthwise (groups == c, any channel multiplier): direct, one thread per output element in a
//     1-D grid-stride loop, ow fastest so a warp shares its channel's weights (broadcast reads).
//   Split-K (groups == 1): when the output tiles cannot fill the GPU (deep layers on small maps:
//     512 -> 512 at 7x7 is 8 tiles of 64 x 64), blockIdx.z takes a slice of K instead of a group and
//     stores its raw partial sums to the workspace as [split][n][m] (m fastest: coalesced); a second
//     kernel sums the slices in a fixed order (deterministic), then applies bias, residual and
//     activation. The split count depends on the shape only (a fixed target of kSplitTarget blocks,
//     not the GPU's SM count), so the workspace sized at plan build always fits the launch.
// Workspace: split-K's partial sums, splits x M x N floats (0 when the conv does not split).
// Later versions: tensor cores (mma.sync FP16/TF32) for the implicit GEMM; cp.async double
// buffering; an incremental (ci, kh, kw) walk or a per-K offset table instead of divisions; a
// shared-memory input tile for the depthwise kernel.
#include <algorithm>

#include "cuda/common.cuh"

namespace ev {
namespace {

struct ConvArgs {
  int c, h, w, k, r, s, out_h, out_w;
  int stride_h, stride_w, pad_t, pad_l, dil_h, dil_w;
  int groups, cg, kg;  // groups, input and output channels per group
  int M, K, ohw;       // GEMM sizes, out_h * out_w
  int total;           // output elements
};

constexpr int kThreads = 256;
constexpr int BK = 16;
constexpr int kSplitTarget = 256;   // blocks to aim for: about 2 per SM on a 132-SM H100 / H200
constexpr int kSplitMinDepth = 128;  // K elements per slice at least (8 K tiles)
constexpr int kMaxSplits = 32;

// Fetches the K tile starting at k0 into registers: A_LOADS im2col values for the thread's fixed
// output pixel, B_LOADS weights. Out-of-range rows, columns and padding taps read as 0.
template <typename T, int BM, int BN, bool k1x1>
__device__ __forceinline__ void conv_fetch(const ConvArgs& a, const T* __restrict__ xg,
                                           const T* __restrict__ wg, bool am_ok, int ih0, int iw0,
                                           int a_k, int b_k, int b_n, int n0, int k0, int k_end,
                                           float (&a_reg)[BK / (kThreads / BM)],
                                           float (&b_reg)[BN / (kThreads / BK)]) {
  constexpr int A_ROWS = kThreads / BM;
  constexpr int B_COLS = kThreads / BK;
#pragma unroll
  for (int i = 0; i < BK / A_ROWS; ++i) {
    const int kidx = k0 + a_k + i * A_ROWS;
    float v = 0.f;
    if (am_ok && kidx < k_end) {
      int ci, kh, kw;
      if (k1x1) {
        ci = kidx;
        kh = kw = 0;
      } else {
        const int rs = a.r * a.s;
        ci = kidx / rs;
        const int rem = kidx - ci * rs;
        kh = rem / a.s;
        kw = rem - kh * a.s;
      }
      const int ih = ih0 + kh * a.dil_h, iw = iw0 + kw * a.dil_w;
      if (ih >= 0 && ih < a.h && iw >= 0 && iw < a.w)
        v = cuda::ld(xg + (ci * a.h + ih) * a.w + iw);
    }
    a_reg[i] = v;
  }
#pragma unroll
  for (int j = 0; j < BN / B_COLS; ++j) {
    const int nn = n0 + b_n + j * B_COLS;
    const int kidx = k0 + b_k;
    b_reg[j] = (nn < a.kg && kidx < k_end) ? cuda::ld(wg + nn * a.K + kidx) : 0.f;
  }
}

template <typename T, int BM, int BN, int TM, int TN, bool k1x1>
__global__ void conv2d_igemm_kernel(ConvArgs a, const T* __restrict__ x, const T* __restrict__ w,
                                    const T* __restrict__ bias, const T* __restrict__ residual,
                                    T* __restrict__ y, Epilogue e, float* __restrict__ partial,
                                    int k_chunk) {
  constexpr int MT = BM / TM;          // threads along M
  constexpr int NTH = BN / TN;         // threads along N
  constexpr int A_ROWS = kThreads / BM;  // K rows of the A tile loaded per pass
  constexpr int A_LOADS = BK / A_ROWS;
  constexpr int B_COLS = kThreads / BK;  // N columns of the B tile loaded per pass
  constexpr int B_LOADS = BN / B_COLS;
  static_assert(MT * NTH == kThreads, "one micro-tile per thread");
  static_assert(kThreads % BM == 0 && BK % A_ROWS == 0, "A tile loader");
  static_assert(BN % B_COLS == 0, "B tile loader");

  __shared__ float As[BK][BM];
  __shared__ float Bs[BK][BN + 1];  // +1: the K-fastest stores of B would hit one bank otherwise

  const int tid = threadIdx.x;
  const int m0 = blockIdx.x * BM;
  // The A loader's output pixel is fixed for the whole kernel: decompose it once.
  const int a_mm = tid % BM, a_k = tid / BM;
  const int am = m0 + a_mm;
  const bool am_ok = am < a.M;
  int ab = 0, ih0 = 0, iw0 = 0;
  if (am_ok) {
    ab = am / a.ohw;
    const int p = am - ab * a.ohw;
    const int oh = p / a.out_w;
    ih0 = oh * a.stride_h - a.pad_t;
    iw0 = (p - oh * a.out_w) * a.stride_w - a.pad_l;
  }
  const int b_k = tid % BK, b_n = tid / BK;
  const int tx = tid % MT, ty = tid / MT;
  const int hw = a.h * a.w;
  const int n_tiles = (a.kg + BN - 1) / BN;

  // Split-K (partial != nullptr, groups == 1): blockIdx.z picks the K slice instead of the group.
  const int k_begin = partial ? static_cast<int>(blockIdx.z) * k_chunk : 0;
  const int k_end = partial ? min(a.K, k_begin + k_chunk) : a.K;
  const int g_first = partial ? 0 : static_cast<int>(blockIdx.z);
  const int g_step = partial ? a.groups : static_cast<int>(gridDim.z);
  for (int g = g_first; g < a.groups; g += g_step) {
    const T* xg = x + (ab * a.c + g * a.cg) * hw;
    const T* wg = w + g * a.kg * a.K;
    for (int nt = blockIdx.y; nt < n_tiles; nt += gridDim.y) {
      const int n0 = nt * BN;
      float a_reg[A_LOADS], b_reg[B_LOADS];

      float acc[TM][TN];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

      conv_fetch<T, BM, BN, k1x1>(a, xg, wg, am_ok, ih0, iw0, a_k, b_k, b_n, n0, k_begin, k_end, a_reg,
                                  b_reg);
      for (int k0 = k_begin; k0 < k_end; k0 += BK) {
#pragma unroll
        for (int i = 0; i < A_LOADS; ++i) As[a_k + i * A_ROWS][a_mm] = a_reg[i];
#pragma unroll
        for (int j = 0; j < B_LOADS; ++j) Bs[b_k][b_n + j * B_COLS] = b_reg[j];
        __syncthreads();
        if (k0 + BK < k_end)
          conv_fetch<T, BM, BN, k1x1>(a, xg, wg, am_ok, ih0, iw0, a_k, b_k, b_n, n0, k0 + BK, k_end,
                                      a_reg, b_reg);
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
          float av[TM], bv[TN];
#pragma unroll
          for (int i = 0; i < TM; ++i) av[i] = As[kk][tx + i * MT];
#pragma unroll
          for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][ty + j * NTH];
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
      }

#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int m = m0 + tx + i * MT;
        if (m >= a.M) continue;
        const int b = m / a.ohw;
        const int p = m - b * a.ohw;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int nn = n0 + ty + j * NTH;
          if (nn >= a.kg) continue;
          if (partial) {
            partial[(static_cast<int64_t>(blockIdx.z) * a.kg + nn) * a.M + m] = acc[i][j];
            continue;
          }
          const int co = g * a.kg + nn;
          const int off = (b * a.k + co) * a.ohw + p;
          const float bv = bias ? cuda::ld(bias + co) : 0.f;
          const float rv = residual ? cuda::ld(residual + off) : 0.f;
          cuda::st(y + off, cuda::epilogue_call(acc[i][j], bv, rv, e));
        }
      }
    }
  }
}

// Split-K's second pass: one thread per output element (NCHW order, so consecutive threads read
// consecutive m of every slice), slices summed in order, then the epilogue.
template <typename T>
__global__ void conv2d_splitk_reduce_kernel(ConvArgs a, int splits, const float* __restrict__ partial,
                                            const T* __restrict__ bias, const T* __restrict__ residual,
                                            T* __restrict__ y, Epilogue e) {
  const int64_t slice = static_cast<int64_t>(a.kg) * a.M;
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int p = i % a.ohw;
    const int rem = i / a.ohw;
    const int co = rem % a.k;
    const int m = (rem / a.k) * a.ohw + p;
    const float* src = partial + static_cast<int64_t>(co) * a.M + m;
    float sum = 0.f;
    for (int z = 0; z < splits; ++z) sum += src[z * slice];
    const float bv = bias ? cuda::ld(bias + co) : 0.f;
    const float rv = residual ? cuda::ld(residual + i) : 0.f;
    cuda::st(y + i, apply_epilogue(sum, bv, rv, e));
  }
}

template <typename T>
__global__ void conv2d_depthwise_kernel(ConvArgs a, const T* __restrict__ x,
                                        const T* __restrict__ w, const T* __restrict__ bias,
                                        const T* __restrict__ residual, T* __restrict__ y,
                                        Epilogue e) {
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int ow = i % a.out_w;
    int rem = i / a.out_w;
    const int oh = rem % a.out_h;
    rem /= a.out_h;
    const int co = rem % a.k;
    const int b = rem / a.k;
    const T* xp = x + (b * a.c + co / a.kg) * a.h * a.w;
    const T* wp = w + co * a.r * a.s;
    const int ih0 = oh * a.stride_h - a.pad_t, iw0 = ow * a.stride_w - a.pad_l;
    float acc = 0.f;
    for (int kh = 0; kh < a.r; ++kh) {
      const int ih = ih0 + kh * a.dil_h;
      if (ih < 0 || ih >= a.h) continue;
      for (int kw = 0; kw < a.s; ++kw) {
        const int iw = iw0 + kw * a.dil_w;
        if (iw < 0 || iw >= a.w) continue;
        acc = fmaf(cuda::ld(xp + ih * a.w + iw), cuda::ld(wp + kh * a.s + kw), acc);
      }
    }
    const float bv = bias ? cuda::ld(bias + co) : 0.f;
    const float rv = residual ? cuda::ld(residual + i) : 0.f;
    cuda::st(y + i, apply_epilogue(acc, bv, rv, e));
  }
}

struct SplitK {
  int splits = 1;
  int chunk = 0;  // K elements per slice, a multiple of BK
};

// The tile sizes launch_conv picks, and the K split for them: only when groups == 1 and the output
// tiles would fill less than half of kSplitTarget blocks.
SplitK split_k(const ConvArgs& a) {
  SplitK sk;
  sk.chunk = a.K;
  if (a.groups != 1) return sk;
  const int bm = a.kg <= 16 ? 128 : 64, bn = a.kg <= 16 ? 16 : 64;
  const int64_t tiles = static_cast<int64_t>((a.M + bm - 1) / bm) * ((a.kg + bn - 1) / bn);
  if (2 * tiles > kSplitTarget) return sk;
  int splits = static_cast<int>((kSplitTarget + tiles - 1) / tiles);
  splits = std::min({splits, a.K / kSplitMinDepth, kMaxSplits});
  if (splits < 2) return sk;
  const int chunk = ((a.K + splits - 1) / splits + BK - 1) / BK * BK;
  sk.splits = (a.K + chunk - 1) / chunk;
  sk.chunk = chunk;
  return sk;
}

template <typename T, int BM, int BN, int TM, int TN, bool k1x1>
void launch_igemm(const ConvArgs& a, const T* x, const T* w, const T* bias, const T* residual,
                  T* y, const Epilogue& e, const SplitK& sk, float* partial, cudaStream_t st) {
  const int n_tiles = (a.kg + BN - 1) / BN;
  const int z = partial ? sk.splits : a.groups;
  const dim3 grid(static_cast<unsigned>((a.M + BM - 1) / BM),
                  static_cast<unsigned>(n_tiles < 65535 ? n_tiles : 65535),
                  static_cast<unsigned>(z < 65535 ? z : 65535));
  conv2d_igemm_kernel<T, BM, BN, TM, TN, k1x1><<<grid, kThreads, 0, st>>>(a, x, w, bias, residual,
                                                                        y, e, partial, sk.chunk);
  if (partial) {
    EV_CUDA_CHECK_LAUNCH();
    conv2d_splitk_reduce_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
        a, sk.splits, partial, bias, residual, y, e);
  }
}

ConvArgs make_args(const Conv2dShape& s) {
  ConvArgs a;
  a.total = cuda::to_int(s.n * s.k * s.out_h() * s.out_w(), "conv2d output elements");
  cuda::to_int(s.n * s.c * s.h * s.w, "conv2d input elements");
  cuda::to_int(s.k * (s.c / s.groups) * s.r * s.s, "conv2d weight elements");
  // Input coordinates o * stride - pad + tap * dil stay within these bounds in int.
  cuda::to_int(s.h + s.pad_t + s.pad_b + s.dil_h * s.r + s.stride_h, "conv2d padded height");
  cuda::to_int(s.w + s.pad_l + s.pad_r + s.dil_w * s.s + s.stride_w, "conv2d padded width");
  // The last M tile's rows (up to 127 past M) are computed, then masked.
  cuda::to_int(s.n * s.out_h() * s.out_w() + 128, "conv2d output pixels");
  a.c = static_cast<int>(s.c);
  a.h = static_cast<int>(s.h);
  a.w = static_cast<int>(s.w);
  a.k = static_cast<int>(s.k);
  a.r = static_cast<int>(s.r);
  a.s = static_cast<int>(s.s);
  a.out_h = static_cast<int>(s.out_h());
  a.out_w = static_cast<int>(s.out_w());
  a.stride_h = static_cast<int>(s.stride_h);
  a.stride_w = static_cast<int>(s.stride_w);
  a.pad_t = static_cast<int>(s.pad_t);
  a.pad_l = static_cast<int>(s.pad_l);
  a.dil_h = static_cast<int>(s.dil_h);
  a.dil_w = static_cast<int>(s.dil_w);
  a.groups = static_cast<int>(s.groups);
  a.cg = static_cast<int>(s.c / s.groups);
  a.kg = static_cast<int>(s.k / s.groups);
  a.ohw = a.out_h * a.out_w;
  a.M = static_cast<int>(s.n) * a.ohw;
  a.K = a.cg * a.r * a.s;
  return a;
}

}  // namespace

size_t conv2d_cuda_workspace(const Conv2dShape& s, DType) {
  const ConvArgs a = make_args(s);
  if (a.total <= 0 || a.groups == a.c) return 0;  // nothing to do, or the depthwise kernel
  const SplitK sk = split_k(a);
  return sk.splits > 1 ? static_cast<size_t>(sk.splits) * a.M * a.kg * sizeof(float) : 0;
}

void conv2d_cuda(const Conv2dShape& s, DType dt, const void* x, const void* w, const void* bias,
                 const void* residual, void* y, const Epilogue& e, void* workspace,
                 Stream stream) {
  const ConvArgs a = make_args(s);
  if (a.total <= 0) return;
  // Without a workspace (a caller that sized none) the conv runs unsplit, which is always correct.
  const SplitK sk = a.groups == a.c ? SplitK{} : split_k(a);
  float* partial = sk.splits > 1 ? static_cast<float*>(workspace) : nullptr;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x);
    const T* pw = static_cast<const T*>(w);
    const T* pb = static_cast<const T*>(bias);
    const T* pr = static_cast<const T*>(residual);
    T* py = static_cast<T*>(y);
    const bool k1x1 = a.r == 1 && a.s == 1;
    if (a.groups == a.c) {
      conv2d_depthwise_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
          a, px, pw, pb, pr, py, e);
    } else if (a.kg <= 16) {
      if (k1x1)
        launch_igemm<T, 128, 16, 8, 1, true>(a, px, pw, pb, pr, py, e, sk, partial, st);
      else
        launch_igemm<T, 128, 16, 8, 1, false>(a, px, pw, pb, pr, py, e, sk, partial, st);
    } else {
      if (k1x1)
        launch_igemm<T, 64, 64, 4, 4, true>(a, px, pw, pb, pr, py, e, sk, partial, st);
      else
        launch_igemm<T, 64, 64, 4, 4, false>(a, px, pw, pb, pr, py, e, sk, partial, st);
    }
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
