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
//   FP16 on tensor cores (sm_80+, more than 16 output channels per group): see "FP16 on tensor
//     cores" below; narrow layers, depthwise and GPUs before Ampere take the kernels above.
// Later versions: TF32 as an opt-in for FP32; cp.async multi-stage pipelines; a (kh, kw, ci) weight
// order so that a gathered run of K shares one input pixel; a shared-memory input tile for the
// depthwise kernel.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

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

// Where output pixel m < M (a row of the n * out_h * out_w GEMM rows) reads its input: image b and the
// top-left corner (ih0, iw0) of its window, padding included.
struct PixelOrigin {
  int b, ih0, iw0;
};

__device__ __forceinline__ PixelOrigin pixel_origin(const ConvArgs& a, int m) {
  const int b = m / a.ohw;
  const int p = m - b * a.ohw;
  const int oh = p / a.out_w;
  return {b, oh * a.stride_h - a.pad_t, (p - oh * a.out_w) * a.stride_w - a.pad_l};
}

// What blockIdx.z means to both implicit GEMMs: with split-K (partial sums, groups == 1) the block's K
// slice [k_begin, k_end), its single group visited once; otherwise its first group (a grid-stride loop over
// groups in steps of g_step), K whole.
struct ZSlice {
  int k_begin, k_end, g_first, g_step;
};

__device__ __forceinline__ ZSlice z_slice(const ConvArgs& a, const float* partial, int k_chunk) {
  const int k_begin = partial ? static_cast<int>(blockIdx.z) * k_chunk : 0;
  return {k_begin, partial ? min(a.K, k_begin + k_chunk) : a.K, partial ? 0 : static_cast<int>(blockIdx.z),
          partial ? a.groups : static_cast<int>(gridDim.z)};
}

// y[b, co, p] = epilogue(v + bias[co] (+ residual at the same place)), p the pixel within the image.
template <typename T>
__device__ __forceinline__ void store_output(const ConvArgs& a, int b, int p, int co, float v,
                                             const T* __restrict__ bias, const T* __restrict__ residual,
                                             T* __restrict__ y, Epilogue e) {
  const int off = (b * a.k + co) * a.ohw + p;
  const float bv = bias ? cuda::ld(bias + co) : 0.f;
  const float rv = residual ? cuda::ld(residual + off) : 0.f;
  cuda::st(y + off, cuda::epilogue_call(v, bv, rv, e));
}

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
  const PixelOrigin po = am_ok ? pixel_origin(a, am) : PixelOrigin{0, 0, 0};
  const int ab = po.b, ih0 = po.ih0, iw0 = po.iw0;
  const int b_k = tid % BK, b_n = tid / BK;
  const int tx = tid % MT, ty = tid / MT;
  const int hw = a.h * a.w;
  const int n_tiles = (a.kg + BN - 1) / BN;

  // Split-K (partial != nullptr, groups == 1): blockIdx.z picks the K slice instead of the group.
  const ZSlice zs = z_slice(a, partial, k_chunk);
  const int k_begin = zs.k_begin, k_end = zs.k_end;
  for (int g = zs.g_first; g < a.groups; g += zs.g_step) {
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
          store_output(a, b, p, g * a.kg + nn, acc[i][j], bias, residual, y, e);
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

// ---- FP16 on tensor cores (sm_80+): the same implicit GEMM with mma.sync m16n8k16 ----
// Block tile 64 pixels x BN output channels x 32 K (BN = 64, or 128 for wide layers that neither split
// over K nor drop under 256 blocks: each gathered im2col value then feeds twice the mma work), 4 warps
// of 32 x BN/2, FP32 accumulators. Each thread gathers 16 consecutive K values of one A row (an
// output pixel; the (ci, kh, kw) walk is incremental, one division per tile) and 16 of BN / 64 B
// rows (output channels; 16-byte loads when the weights are aligned), and stores them as 16-byte words into
// shared rows padded to 40 halves (80 bytes), which keeps those stores and the ldmatrix fragment
// loads (8 rows of 16 bytes each) free of bank conflicts. The next tile's global loads are issued
// before this tile's mma. The accumulators leave through a shared [channel][pixel] tile (rows of 68
// floats: lane (g, t) writes bank 8t + g) so that the stores to NCHW, the epilogue's residual reads
// and split-K's partial sums run along pixels, coalesced. Split-K and groups work as in the FP32
// kernel.
namespace tc {
constexpr int BM = 64, kThreads = 128;  // BK = 32 and the shared layouts: in the kernel
}  // namespace tc

// The device helpers exist only where the kernel body does (sm_80+; the host pass needs none of them).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ uint32_t pack_halves(__half lo, __half hi) {
  return static_cast<uint32_t>(__half_as_ushort(lo)) | (static_cast<uint32_t>(__half_as_ushort(hi)) << 16);
}

// 16 consecutive K values (from kidx) of the im2col row of one output pixel, as 8 packed words.
template <bool k1x1>
__device__ __forceinline__ void tc_fetch_a(const ConvArgs& a, const __half* __restrict__ xg, bool am_ok,
                                           int ih0, int iw0, int kidx, int k_end, uint32_t (&out)[8]) {
  const __half zero = __float2half(0.f);
  __half v[16];
  if (k1x1) {
    const bool pix_ok = am_ok && ih0 >= 0 && ih0 < a.h && iw0 >= 0 && iw0 < a.w;
    const int hw = a.h * a.w;
    const __half* p = xg + ih0 * a.w + iw0;
#pragma unroll
    for (int i = 0; i < 16; ++i) v[i] = (pix_ok && kidx + i < k_end) ? p[(kidx + i) * hw] : zero;
  } else {
    const int rs = a.r * a.s;
    int ci = kidx / rs;
    const int rem = kidx - ci * rs;
    int kh = rem / a.s;
    int kw = rem - kh * a.s;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      __half e = zero;
      if (am_ok && kidx + i < k_end) {
        const int ih = ih0 + kh * a.dil_h, iw = iw0 + kw * a.dil_w;
        if (ih >= 0 && ih < a.h && iw >= 0 && iw < a.w) e = xg[(ci * a.h + ih) * a.w + iw];
      }
      v[i] = e;
      if (++kw == a.s) {
        kw = 0;
        if (++kh == a.r) {
          kh = 0;
          ++ci;
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = pack_halves(v[2 * i], v[2 * i + 1]);
}

// 16 consecutive K values (from kidx) of output channel nn's weights, as 8 packed words.
__device__ __forceinline__ void tc_fetch_b(const ConvArgs& a, const __half* __restrict__ wg, int nn,
                                           int kidx, int k_end, bool w_vec, uint32_t* out) {
  const __half* p = wg + static_cast<int64_t>(nn) * a.K + kidx;
  if (w_vec && nn < a.kg && kidx + 16 <= k_end) {
    const uint4 lo = *reinterpret_cast<const uint4*>(p);
    const uint4 hi = *reinterpret_cast<const uint4*>(p + 8);
    out[0] = lo.x, out[1] = lo.y, out[2] = lo.z, out[3] = lo.w;
    out[4] = hi.x, out[5] = hi.y, out[6] = hi.z, out[7] = hi.w;
    return;
  }
  const __half zero = __float2half(0.f);
  __half v[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = (nn < a.kg && kidx + i < k_end) ? p[i] : zero;
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = pack_halves(v[2 * i], v[2 * i + 1]);
}

// Four 8 x 8 half matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8
// and receives, of each matrix, the two halves at row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1:
// exactly the mma.m16n8k16 fragment layout.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const __half* p) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void mma_f16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                              uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

template <int BN, bool k1x1>
__global__ void __launch_bounds__(tc::kThreads)
    conv2d_igemm_f16_tc_kernel(ConvArgs a, const __half* __restrict__ x, const __half* __restrict__ w,
                               const __half* __restrict__ bias, const __half* __restrict__ residual,
                               __half* __restrict__ y, Epilogue e, float* __restrict__ partial, int k_chunk,
                               bool w_vec) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int BM = tc::BM, BK = 32, kThreads = tc::kThreads;
  constexpr int LDS = BK + 8;  // halves per shared A / B row
  constexpr int LDC = BM + 4;  // floats per row of the staged output tile
  constexpr int WN = BN / 2, NT = WN / 8;  // a warp's channels, its n8 tiles
  constexpr int B_ROWS = BN / 64;           // B rows per loader thread
  constexpr int kAbBytes = (BM + BN) * LDS * 2, kCBytes = BN * LDC * 4;
  __shared__ __align__(16) unsigned char smem[kAbBytes > kCBytes ? kAbBytes : kCBytes];
  auto As = reinterpret_cast<__half (*)[LDS]>(smem);
  auto Bs = reinterpret_cast<__half (*)[LDS]>(smem + BM * LDS * 2);
  auto Cs = reinterpret_cast<float (*)[LDC]>(smem);  // after the K loop only

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g8 = lane >> 2, t4 = lane & 3;
  const int wm = (warp & 1) * 32, wn = (warp >> 1) * WN;
  // ldmatrix addresses: A rows wm + (lane % 16), K offset 8 (lane / 16); B rows (lane / 16) * 8 +
  // lane % 8, K offset 8 ((lane / 8) % 2).
  const int a_lrow = lane & 15, a_lk = (lane >> 4) * 8;
  const int b_lrow = ((lane >> 4) << 3) + (lane & 7), b_lk = ((lane >> 3) & 1) * 8;
  const int m0 = blockIdx.x * BM;
  const int l_row = tid % BM, l_k = (tid / BM) * 16;  // loader: row of A (and B), first K of 16
  const int am = m0 + l_row;
  const bool am_ok = am < a.M;
  const PixelOrigin po = am_ok ? pixel_origin(a, am) : PixelOrigin{0, 0, 0};
  const int ab = po.b, ih0 = po.ih0, iw0 = po.iw0;
  const int hw = a.h * a.w;
  const int n_tiles = (a.kg + BN - 1) / BN;
  const ZSlice zs = z_slice(a, partial, k_chunk);
  const int k_begin = zs.k_begin, k_end = zs.k_end;
  for (int g = zs.g_first; g < a.groups; g += zs.g_step) {
    const __half* xg = x + (static_cast<int64_t>(ab) * a.c + g * a.cg) * hw;
    const __half* wg = w + static_cast<int64_t>(g) * a.kg * a.K;
    for (int nt = blockIdx.y; nt < n_tiles; nt += gridDim.y) {
      const int n0 = nt * BN;
      float acc[2][NT][4];
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

      uint32_t a_reg[8], b_reg[B_ROWS][8];
      tc_fetch_a<k1x1>(a, xg, am_ok, ih0, iw0, k_begin + l_k, k_end, a_reg);
#pragma unroll
      for (int q = 0; q < B_ROWS; ++q)
        tc_fetch_b(a, wg, n0 + l_row + q * 64, k_begin + l_k, k_end, w_vec, b_reg[q]);
      for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        uint4* as = reinterpret_cast<uint4*>(&As[l_row][l_k]);
        as[0] = make_uint4(a_reg[0], a_reg[1], a_reg[2], a_reg[3]);
        as[1] = make_uint4(a_reg[4], a_reg[5], a_reg[6], a_reg[7]);
#pragma unroll
        for (int q = 0; q < B_ROWS; ++q) {
          uint4* bs = reinterpret_cast<uint4*>(&Bs[l_row + q * 64][l_k]);
          bs[0] = make_uint4(b_reg[q][0], b_reg[q][1], b_reg[q][2], b_reg[q][3]);
          bs[1] = make_uint4(b_reg[q][4], b_reg[q][5], b_reg[q][6], b_reg[q][7]);
        }
        __syncthreads();
        if (k0 + BK < k_end) {  // the next tile's global loads overlap this tile's mma
          tc_fetch_a<k1x1>(a, xg, am_ok, ih0, iw0, k0 + BK + l_k, k_end, a_reg);
#pragma unroll
          for (int q = 0; q < B_ROWS; ++q)
            tc_fetch_b(a, wg, n0 + l_row + q * 64, k0 + BK + l_k, k_end, w_vec, b_reg[q]);
        }
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
          uint32_t af[2][4], bf[NT / 2][4];
#pragma unroll
          for (int i = 0; i < 2; ++i) ldmatrix_x4(af[i], &As[wm + i * 16 + a_lrow][kk + a_lk]);
#pragma unroll
          for (int j = 0; j < NT / 2; ++j) ldmatrix_x4(bf[j], &Bs[wn + j * 16 + b_lrow][kk + b_lk]);
#pragma unroll
          for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < NT; ++j)
              mma_f16_16816(acc[i][j], af[i], bf[j / 2][(j % 2) * 2], bf[j / 2][(j % 2) * 2 + 1]);
        }
        __syncthreads();
      }

      // Stage the tile as [channel][pixel] (Cs aliases As / Bs: the loop's last barrier guards it).
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r)
            Cs[wn + j * 8 + 2 * t4 + (r & 1)][wm + i * 16 + g8 + (r >> 1) * 8] = acc[i][j][r];
      __syncthreads();
      for (int idx = tid; idx < BM * BN; idx += kThreads) {
        const int n = idx / BM, mi = idx % BM;
        const int m = m0 + mi, nn = n0 + n;
        if (m >= a.M || nn >= a.kg) continue;
        const float v = Cs[n][mi];
        if (partial) {
          partial[(static_cast<int64_t>(blockIdx.z) * a.kg + nn) * a.M + m] = v;
          continue;
        }
        const int b = m / a.ohw;
        store_output(a, b, m - b * a.ohw, g * a.kg + nn, v, bias, residual, y, e);
      }
      __syncthreads();  // before the next tile's stores overwrite Cs
    }
  }
#endif
}

// Whether this process's current GPU runs the tensor-core kernel: the code loaded for it must have
// been compiled for sm_80 or newer (a build with only sm_75 PTX JIT-compiles an empty body on a
// newer GPU), so this asks the runtime for the kernel's PTX version, once per device.
bool f16_tensor_cores_usable() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  static std::atomic<int> known[64];  // 0 not asked yet, 1 usable, 2 not
  if (dev < 0 || dev >= 64) return false;
  int v = known[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    cudaFuncAttributes at{};
    if (cudaFuncGetAttributes(&at, conv2d_igemm_f16_tc_kernel<64, true>) != cudaSuccess) {
      cudaGetLastError();  // a failed query must not surface as a later launch's error
      v = 2;
    } else {
      v = at.ptxVersion >= 80 ? 1 : 2;
    }
    known[dev].store(v, std::memory_order_relaxed);
  }
  return v == 1;
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

template <int BN, bool k1x1>
void launch_igemm_f16_tc(const ConvArgs& a, const __half* x, const __half* w, const __half* bias,
                         const __half* residual, __half* y, const Epilogue& e, const SplitK& sk,
                         float* partial, cudaStream_t st) {
  const int n_tiles = (a.kg + BN - 1) / BN;
  const int z = partial ? sk.splits : a.groups;
  const dim3 grid(static_cast<unsigned>((a.M + tc::BM - 1) / tc::BM),
                  static_cast<unsigned>(n_tiles < 65535 ? n_tiles : 65535),
                  static_cast<unsigned>(z < 65535 ? z : 65535));
  // 16-byte weight loads: every row and every 16-value run starts 16-byte aligned.
  const bool w_vec = a.K % 8 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  conv2d_igemm_f16_tc_kernel<BN, k1x1><<<grid, tc::kThreads, 0, st>>>(a, x, w, bias, residual, y, e,
                                                                      partial, sk.chunk, w_vec);
  if (partial) {
    EV_CUDA_CHECK_LAUNCH();
    conv2d_splitk_reduce_kernel<__half><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
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
      EV_CUDA_CHECK_LAUNCH();
      return;
    }
    if constexpr (std::is_same_v<T, __half>) {
      // Narrow layers (<= 16 output channels) would leave most of a 64-wide tensor-core tile idle.
      if (a.kg > 16 && f16_tensor_cores_usable()) {
        // 128-channel tiles halve the im2col gathers per mma, but also the blocks: only where those
        // still fill the GPU (H100, batch 32: 128 -> 128 at 28x28 0.23 -> 0.14 ms, 256 -> 256 at
        // 14x14 with half the blocks 0.20 -> 0.22 ms).
        const int64_t wide_blocks = static_cast<int64_t>((a.M + tc::BM - 1) / tc::BM) *
                                    ((a.kg + 127) / 128) * a.groups;
        const bool wide = a.kg >= 128 && !partial && wide_blocks >= kSplitTarget;
        if (wide && k1x1)
          launch_igemm_f16_tc<128, true>(a, px, pw, pb, pr, py, e, sk, partial, st);
        else if (wide)
          launch_igemm_f16_tc<128, false>(a, px, pw, pb, pr, py, e, sk, partial, st);
        else if (k1x1)
          launch_igemm_f16_tc<64, true>(a, px, pw, pb, pr, py, e, sk, partial, st);
        else
          launch_igemm_f16_tc<64, false>(a, px, pw, pb, pr, py, e, sk, partial, st);
        EV_CUDA_CHECK_LAUNCH();
        return;
      }
    }
    if (a.kg <= 16) {
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
