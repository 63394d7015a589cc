// conv_transpose2d on the CPU: the scatter-form reference and the fast path.
//
// Fast path, general case: per group, a GEMM col[(kl, ry, sx), q] = w^T x over a chunk of input
// positions q (input rows of all images laid end to end, so the batch widens the GEMM), then
// col2im scatter-adds col into the output, each thread owning whole output channels so there are no
// races; a last pass applies bias and activation. The GEMM micro-kernel keeps a 6 x 16 tile in
// vector registers, loading 16 contiguous positions of x (copied into the zero-padded workspace so
// the ragged end needs no masking) and broadcasting 6 contiguous weights per input channel.
// Packed path (one group, no dilation, weights packed at plan build by conv_transpose2d_cpu_pack): the same
// col, as a 1x1 conv2d from c to k * r * s channels on conv2d's pointwise path (sgemm.h's tiles), then
// col2im with bias and activation, one output plane per thread. The DCGAN generators' 4x4 -> 8x8 layer:
// 157 -> 81 us against its sub-pixel conv (Xeon, 2 threads), so conv_transpose_as_conv leaves such
// small-map layers transposed convs on the CPU.
// Fast path, 1x1 input without padding (a DCGAN generator's first layer): the output is
// x[n, c] @ w[c, k*r*s], a GEMM with the batch as M; it vectorizes along k*r*s instead, since the
// general path would pad a single position up to 16.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/sgemm.h"
#include "epilogue.h"
#include "ops.h"

namespace ev {

void conv_transpose2d_ref(const ConvTranspose2dShape& sh, const float* x, const float* w,
                          const float* bias, float* y, const Epilogue& e) {
  const int64_t oh = sh.out_h(), ow = sh.out_w();
  const int64_t cpg = sh.c / sh.groups, kpg = sh.k / sh.groups;
  std::fill(y, y + sh.n * sh.k * oh * ow, 0.f);
  for (int64_t n = 0; n < sh.n; ++n)
    for (int64_t c = 0; c < sh.c; ++c) {
      const int64_t g = c / cpg;
      for (int64_t iy = 0; iy < sh.h; ++iy)
        for (int64_t ix = 0; ix < sh.w; ++ix) {
          const float xv = x[((n * sh.c + c) * sh.h + iy) * sh.w + ix];
          for (int64_t kl = 0; kl < kpg; ++kl) {
            const int64_t k = g * kpg + kl;
            for (int64_t ry = 0; ry < sh.r; ++ry) {
              const int64_t oy = iy * sh.stride_h - sh.pad_t + ry * sh.dil_h;
              if (oy < 0 || oy >= oh) continue;
              for (int64_t sx = 0; sx < sh.s; ++sx) {
                const int64_t ox = ix * sh.stride_w - sh.pad_l + sx * sh.dil_w;
                if (ox < 0 || ox >= ow) continue;
                y[((n * sh.k + k) * oh + oy) * ow + ox] +=
                    xv * w[((c * kpg + kl) * sh.r + ry) * sh.s + sx];
              }
            }
          }
        }
    }
  for (int64_t n = 0; n < sh.n; ++n)
    for (int64_t k = 0; k < sh.k; ++k)
      for (int64_t i = 0; i < oh * ow; ++i) {
        float& v = y[(n * sh.k + k) * oh * ow + i];
        v = apply_epilogue(v, bias ? bias[k] : 0.f, 0.f, e);
      }
}

namespace {

typedef float v8f __attribute__((vector_size(32)));
constexpr int kLanes = 8;
constexpr int kMR = 6;    // col rows (output channel, tap) per GEMM micro-tile
constexpr int kNR = 16;   // positions per GEMM micro-tile (two vectors)
constexpr int64_t kColBudget = int64_t{1} << 18;  // floats of col per chunk: stays in L2/L3
// Below this many flops a call runs on one thread: waking a team and its barriers cost more.
constexpr double kParallelFlops = 2e5;

// 8 floats at any float-aligned address: a load through it is one unaligned vector load.
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
inline const v8f_u& load8(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }

bool is_dense_1x1(const ConvTranspose2dShape& s) {
  return s.h == 1 && s.w == 1 && s.dil_h == 1 && s.dil_w == 1 && s.pad_t == 0 && s.pad_l == 0 &&
         s.out_h() == s.r && s.out_w() == s.s;
}

// Per group, col[m, q] = sum over the group's input channels c of w[c, m] * x[c, q], where
// m = (kl * r + ry) * s + sx and q runs over a chunk of input rows of all images laid end to end
// (the batch folds into the GEMM's N). The chunk of x is copied into xpad [cpg][np] with np a
// multiple of kNR, zero-filled past the chunk, so every vector load is in bounds.
struct CtPlan {
  int64_t m, rows, np;  // GEMM M per group, input rows per chunk, padded chunk width
  size_t xpad_floats, col_floats;
  explicit CtPlan(const ConvTranspose2dShape& s) {
    m = (s.k / s.groups) * s.r * s.s;
    rows = std::max<int64_t>(1, std::min(s.n * s.h, kColBudget / std::max<int64_t>(1, m * s.w)));
    np = (rows * s.w + kNR - 1) / kNR * kNR;
    xpad_floats = static_cast<size_t>(s.c / s.groups * np);
    col_floats = static_cast<size_t>(m * np);
  }
  size_t bytes() const { return (xpad_floats + col_floats) * sizeof(float); }
};

template <int MR>
void ct_gemm_tile(const float* xq, int64_t np, const float* wm, int64_t m_stride, int64_t cpg,
                  float* out) {
  v8f acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = v8f{};
  for (int64_t c = 0; c < cpg; ++c) {
    const v8f x0 = load8(xq + c * np), x1 = load8(xq + c * np + kLanes);
    const float* wc = wm + c * m_stride;
    for (int i = 0; i < MR; ++i) {
      const v8f wv = v8f{} + wc[i];
      acc[i][0] += x0 * wv;
      acc[i][1] += x1 * wv;
    }
  }
  for (int i = 0; i < MR; ++i) std::memcpy(out + i * np, acc[i], sizeof acc[i]);
}

// The input columns [lo, hi) of tap column sx that land in the output, at output column ix * stride_w + ox0.
struct TapCols {
  int64_t ox0, lo, hi;
};

inline TapCols tap_cols(const ConvTranspose2dShape& sh, int64_t sx) {
  const int64_t ow = sh.out_w(), ox0 = sx * sh.dil_w - sh.pad_l, st = sh.stride_w;
  return {ox0, ox0 < 0 ? (-ox0 + st - 1) / st : 0, ow - 1 - ox0 < 0 ? 0 : std::min(sh.w, (ow - 1 - ox0) / st + 1)};
}

// Scatter-adds one input row's col values cr for that tap into output row yr.
inline void col2im_row(const TapCols& t, int64_t st, const float* cr, float* yr) {
  for (int64_t ix = t.lo; ix < t.hi; ++ix) yr[ix * st + t.ox0] += cr[ix];
}

// y = epi(y + bias) over one output plane of n values.
inline void finish_plane(float* yp, int64_t n, float bias, const Epilogue& e) {
  for (int64_t j = 0; j < n; ++j) yp[j] = apply_epilogue(yp[j], bias, 0.f, e);
}

void ct_general(const ConvTranspose2dShape& sh, const float* x, const float* w, const float* bias,
                float* y, const Epilogue& e, void* workspace) {
  const CtPlan pl(sh);
  const int64_t oh = sh.out_h(), ow = sh.out_w();
  const int64_t cpg = sh.c / sh.groups, kpg = sh.k / sh.groups, rs = sh.r * sh.s;
  const int64_t m = pl.m, np = pl.np, total_rows = sh.n * sh.h;
  const int64_t mtiles = (m + kMR - 1) / kMR, ntiles = np / kNR;
  float* xpad = static_cast<float*>(workspace);
  float* col = xpad + pl.xpad_floats;
#pragma omp parallel if (sh.flops() > kParallelFlops)
  {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < sh.n * sh.k; ++i) std::fill(y + i * oh * ow, y + (i + 1) * oh * ow, 0.f);
    for (int64_t g = 0; g < sh.groups; ++g)
      for (int64_t r0 = 0; r0 < total_rows; r0 += pl.rows) {
        const int64_t nrows = std::min(pl.rows, total_rows - r0);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < cpg; ++c) {
          float* dst = xpad + c * np;
          for (int64_t i = 0; i < nrows; ++i) {
            const int64_t img = (r0 + i) / sh.h, iy = (r0 + i) % sh.h;
            std::memcpy(dst + i * sh.w, x + ((img * sh.c + g * cpg + c) * sh.h + iy) * sh.w,
                        sh.w * sizeof(float));
          }
          std::fill(dst + nrows * sh.w, dst + np, 0.f);
        }
#pragma omp for collapse(2) schedule(static)
        for (int64_t mt = 0; mt < mtiles; ++mt)
          for (int64_t nt = 0; nt < ntiles; ++nt) {
            const int64_t m0 = mt * kMR, n0 = nt * kNR;
            const float* wm = w + g * cpg * m + m0;
            float* out = col + m0 * np + n0;
            switch (std::min<int64_t>(kMR, m - m0)) {
              case 1: ct_gemm_tile<1>(xpad + n0, np, wm, m, cpg, out); break;
              case 2: ct_gemm_tile<2>(xpad + n0, np, wm, m, cpg, out); break;
              case 3: ct_gemm_tile<3>(xpad + n0, np, wm, m, cpg, out); break;
              case 4: ct_gemm_tile<4>(xpad + n0, np, wm, m, cpg, out); break;
              case 5: ct_gemm_tile<5>(xpad + n0, np, wm, m, cpg, out); break;
              default: ct_gemm_tile<6>(xpad + n0, np, wm, m, cpg, out); break;
            }
          }
        // col2im: each thread owns whole output channels, so the scatter-add has no races.
#pragma omp for schedule(static)
        for (int64_t kl = 0; kl < kpg; ++kl)
          for (int64_t i = 0; i < nrows; ++i) {
            const int64_t img = (r0 + i) / sh.h, iy = (r0 + i) % sh.h;
            float* yk = y + (img * sh.k + g * kpg + kl) * oh * ow;
            for (int64_t ry = 0; ry < sh.r; ++ry) {
              const int64_t oy = iy * sh.stride_h - sh.pad_t + ry * sh.dil_h;
              if (oy < 0 || oy >= oh) continue;
              for (int64_t sx = 0; sx < sh.s; ++sx)
                col2im_row(tap_cols(sh, sx), sh.stride_w, col + (kl * rs + ry * sh.s + sx) * np + i * sh.w,
                           yk + oy * ow);
            }
          }
      }
#pragma omp for schedule(static)
    for (int64_t i = 0; i < sh.n * sh.k; ++i) finish_plane(y + i * oh * ow, oh * ow, bias ? bias[i % sh.k] : 0.f, e);
  }
}

// y[m, col] for images m0 .. m0 + MB and columns col0 .. col0 + 16 of one group (col = kl * rs + tap).
template <int MB>
void ct_dense_micro(const float* xm, int64_t x_stride, const float* wcol, int64_t w_stride,
                    int64_t cpg, float* out /* [MB][16] */) {
  v8f acc[MB][2];
  for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = v8f{};
  for (int64_t c = 0; c < cpg; ++c) {
    const v8f w0 = load8(wcol + c * w_stride), w1 = load8(wcol + c * w_stride + kLanes);
    for (int m = 0; m < MB; ++m) {
      const v8f xv = v8f{} + xm[m * x_stride + c];
      acc[m][0] += w0 * xv;
      acc[m][1] += w1 * xv;
    }
  }
  for (int m = 0; m < MB; ++m) std::memcpy(out + m * 16, acc[m], sizeof acc[m]);
}

void ct_dense_1x1(const ConvTranspose2dShape& sh, const float* x, const float* w,
                  const float* bias, float* y, const Epilogue& e) {
  constexpr int kMB = 4, kNB = 16;
  const int64_t cpg = sh.c / sh.groups, kpg = sh.k / sh.groups, rs = sh.r * sh.s;
  const int64_t cols = kpg * rs;  // per group
  const int64_t cblocks = (cols + kNB - 1) / kNB, mblocks = (sh.n + kMB - 1) / kMB;
  const int64_t tasks = sh.groups * cblocks * mblocks;
#pragma omp parallel for schedule(static) if (sh.flops() > kParallelFlops)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t mb = task % mblocks, cb = (task / mblocks) % cblocks, g = task / (mblocks * cblocks);
    const int64_t m0 = mb * kMB, mcnt = std::min<int64_t>(kMB, sh.n - m0);
    const int64_t col0 = cb * kNB, ccnt = std::min<int64_t>(kNB, cols - col0);
    const float* xm = x + m0 * sh.c + g * cpg;
    const float* wcol = w + g * cpg * cols + col0;
    float acc[kMB * kNB];
    if (ccnt == kNB) {
      switch (mcnt) {
        case 1: ct_dense_micro<1>(xm, sh.c, wcol, cols, cpg, acc); break;
        case 2: ct_dense_micro<2>(xm, sh.c, wcol, cols, cpg, acc); break;
        case 3: ct_dense_micro<3>(xm, sh.c, wcol, cols, cpg, acc); break;
        default: ct_dense_micro<4>(xm, sh.c, wcol, cols, cpg, acc); break;
      }
    } else {  // the ragged last column block: too narrow for a full vector load
      for (int64_t m = 0; m < mcnt; ++m)
        for (int64_t j = 0; j < ccnt; ++j) {
          float a = 0.f;
          for (int64_t c = 0; c < cpg; ++c) a += xm[m * sh.c + c] * wcol[c * cols + j];
          acc[m * kNB + j] = a;
        }
    }
    for (int64_t m = 0; m < mcnt; ++m) {
      float* ym = y + (m0 + m) * sh.k * rs + g * cols + col0;
      for (int64_t j = 0; j < ccnt; ++j) {
        const int64_t k = g * kpg + (col0 + j) / rs;
        ym[j] = apply_epilogue(acc[m * kNB + j], bias ? bias[k] : 0.f, 0.f, e);
      }
    }
  }
}

// The packed path's GEMM: a 1x1 conv2d from the c input channels to col's k * r * s rows (per image
// [k r s][h w], the batch as images).
bool packed_path(const ConvTranspose2dShape& s) {
  return s.groups == 1 && s.dil_h == 1 && s.dil_w == 1 && !is_dense_1x1(s);
}

Conv2dShape col_gemm(const ConvTranspose2dShape& s) {
  Conv2dShape g;
  g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.k = s.k * s.r * s.s;
  return g;
}

int64_t col_floats(const ConvTranspose2dShape& s) { return sgemm::round_up(s.n * s.k * s.r * s.s * s.h * s.w, 16); }

// y = epi(col2im(col) + bias): each thread owns whole output planes, so the scatter-adds have no races.
void col2im(const ConvTranspose2dShape& s, const float* col, const float* bias, float* y, const Epilogue& e) {
  const int64_t oh = s.out_h(), ow = s.out_w(), hw = s.h * s.w, rs = s.r * s.s;
#pragma omp parallel for schedule(static) if (s.flops() > kParallelFlops)
  for (int64_t p = 0; p < s.n * s.k; ++p) {
    const int64_t img = p / s.k, k = p % s.k;
    float* yk = y + p * oh * ow;
    std::fill(yk, yk + oh * ow, 0.f);
    for (int64_t ry = 0; ry < s.r; ++ry)
      for (int64_t sx = 0; sx < s.s; ++sx) {
        const float* ct = col + ((img * s.k + k) * rs + ry * s.s + sx) * hw;
        const TapCols tc = tap_cols(s, sx);
        for (int64_t iy = 0; iy < s.h; ++iy) {
          const int64_t oy = iy * s.stride_h - s.pad_t + ry;
          if (oy >= 0 && oy < oh) col2im_row(tc, s.stride_w, ct + iy * s.w, yk + oy * ow);
        }
      }
    finish_plane(yk, oh * ow, bias ? bias[k] : 0.f, e);
  }
}

}  // namespace

int64_t conv_transpose2d_cpu_packed_floats(const ConvTranspose2dShape& s) {
  return packed_path(s) ? conv2d_cpu_packed_floats(col_gemm(s)) : 0;
}

void conv_transpose2d_cpu_pack(const ConvTranspose2dShape& s, const float* w, float* packed) {
  // w [c][k r s] -> the 1x1 conv's [k r s][c], then conv2d's packing.
  const int64_t m = s.k * s.r * s.s;
  std::vector<float> wt(static_cast<size_t>(m * s.c));
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t i = 0; i < m; ++i) wt[i * s.c + c] = w[c * m + i];
  conv2d_cpu_pack(col_gemm(s), wt.data(), packed);
}

size_t conv_transpose2d_cpu_workspace(const ConvTranspose2dShape& s, bool prepacked) {
  if (is_dense_1x1(s)) return 0;
  if (prepacked && packed_path(s))
    return static_cast<size_t>(col_floats(s)) * sizeof(float) + 64 + conv2d_cpu_workspace(col_gemm(s), true);
  return CtPlan(s).bytes();
}

void conv_transpose2d_cpu(const ConvTranspose2dShape& s, const float* x, const float* w,
                          const float* bias, float* y, const Epilogue& e, void* workspace, const float* packed) {
  if (is_dense_1x1(s)) return ct_dense_1x1(s, x, w, bias, y, e);
  if (packed && packed_path(s)) {
    float* col = sgemm::align64(workspace);
    conv2d_cpu(col_gemm(s), x, nullptr, nullptr, nullptr, col, Epilogue{}, col + col_floats(s), packed);
    return col2im(s, col, bias, y, e);
  }
  ct_general(s, x, w, bias, y, e, workspace);
}

}  // namespace ev
