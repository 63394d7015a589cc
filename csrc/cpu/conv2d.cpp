// conv2d: the reference loops and the fast CPU path.
//
// Fast path, by case:
// - depthwise 3x3 at stride 1 or 2 (32 or more output columns, or a channel multiplier; with AVX-512 also
//   stride 1 at 28-31 columns): a direct SIMD kernel over zero-padded, stride-split copies of the input rows
//   (conv_dw3);
// - depthwise with multiplier 1, under 32 output columns and at least 9 taps: vectors across 8 channels of
//   a pixel-major copy (conv_dw_cblock);
// - other depthwise (groups == c, any multiplier): a direct SIMD kernel over a zero-padded copy of
//   each input plane, split into stride phases so every tap reads contiguous memory even at stride 2;
// - 1x1 at stride > 1 without padding: the strided pixels gathered into a compact copy, then as pointwise;
// - everything else: per group, the blocked SGEMM of sgemm.h with M = output channels,
//   K = c/groups * r * s, the weights as the packed A matrix (conv2d_cpu_pack, once per plan), and
//   N = output pixels: for 1x1
//   stride-1 convs B is the NCHW input itself (N spans the batch); otherwise B is read from a
//   zero-padded, stride-phase-split copy of each image in which every tap is a constant offset
//   (see PaddedPackB), so there is no im2col.
// - 3x3 stride 1 with enough channels and tiles: Winograd F(4x4, 3x3), 36 GEMMs over transformed
//   tiles, the transformed filters packed once like the GEMM weights.
// - convs over input channels of 16 to output channels of 32 (AVX-512) that Winograd does not take (ResNet's
//   stride-2 convs and its 7x7 stage, 5x5 convs, maps under 14 wide): a direct kernel over a channel-blocked
//   padded copy, 32 output channels x 14 pixels or 64 x 7 per tile (conv_direct).
// The epilogue (bias, activation, residual) is fused into the GEMM's or the depthwise kernel's store.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "cpu/dw_pw_blocked.h"
#include "cpu/sgemm.h"
#include "cpu/vec_act.h"
#include "cpu/vec_lanes.h"
#include "epilogue.h"
#include "ops.h"

namespace ev {

void conv2d_ref(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                const float* residual, float* y, const Epilogue& e) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t cg = s.c / s.groups, kg = s.k / s.groups;
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t oc = 0; oc < s.k; ++oc) {
      const int64_t g = oc / kg;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          float acc = 0.f;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t r = 0; r < s.r; ++r) {
              const int64_t iy = oy * s.stride_h - s.pad_t + r * s.dil_h;
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t q = 0; q < s.s; ++q) {
                const int64_t ix = ox * s.stride_w - s.pad_l + q * s.dil_w;
                if (ix < 0 || ix >= s.w) continue;
                acc += x[((b * s.c + g * cg + ci) * s.h + iy) * s.w + ix] *
                       w[((oc * cg + ci) * s.r + r) * s.s + q];
              }
            }
          const int64_t o = ((b * s.k + oc) * oh + oy) * ow + ox;
          y[o] = apply_epilogue(acc, bias ? bias[oc] : 0.f, residual ? residual[o] : 0.f, e);
        }
    }
}

namespace {

using sgemm::NR;
using sgemm::v8f;
using sgemm::v8fu;

// The depthwise kernels' vector: sgemm's widest (16 lanes with AVX-512, else 8).
constexpr int DV = sgemm::kWideLanes;
using dvf = sgemm::vwide;
using dvfu = sgemm::vwideu;

bool is_depthwise(const Conv2dShape& s) { return s.groups == s.c && s.groups > 1; }

// out_h()/out_w() truncate toward zero, so a padded input a little smaller than the dilated kernel
// still yields one output. The fast paths index scratch as if the kernel fits; such degenerate
// shapes (all taps but a few in the padding) go to the bounds-checked reference.
bool kernel_fits(const Conv2dShape& s) {
  return s.h + s.pad_t + s.pad_b >= s.dil_h * (s.r - 1) + 1 &&
         s.w + s.pad_l + s.pad_r >= s.dil_w * (s.s - 1) + 1;
}

// Copies n floats; n <= NR. Inline vector moves: a memcpy call per short run costs more than the
// copy.
inline void copy_short(float* __restrict d, const float* __restrict src, int64_t n) {
  if (n == NR) {
    *reinterpret_cast<v8fu*>(d) = *reinterpret_cast<const v8fu*>(src);
    *reinterpret_cast<v8fu*>(d + 8) = *reinterpret_cast<const v8fu*>(src + 8);
    return;
  }
  for (int64_t e = 0; e < n; ++e) d[e] = src[e];
}

// ---------------------------------------------------------------------------------------------
// Pointwise (1x1, stride 1, no padding): B[ci, j] is the input itself, with the columns
// j = image * h * w + pixel of the whole batch, so small images still fill whole NR panels.
// ---------------------------------------------------------------------------------------------
struct PointwisePackB {
  const float* x;
  int64_t c, hw, cbase;
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    // Whole panels inside one image, the common case: row by row, so the input is read as kl sequential
    // runs of nl floats (panel by panel it was kl streams of 64 bytes, which the prefetcher does not
    // follow: MobileNetV2's 1x1 144 -> 24 at 56x56 took 24% longer on epyc2).
    // A last panel under NR wide (14x14 and 7x7 maps: 196 = 12 x 16 + 4, 49 = 3 x 16 + 1) takes its columns
    // in the same pass, zero-padded: panel by panel, MobileNetV2's 1x1 384 -> 64 at 14x14 took 1.2x as long.
    if ((j0 % hw) + nl <= hw) {
      const float* src = x + ((j0 / hw) * c + cbase + k0) * hw + (j0 % hw);
      const int64_t np = nl / NR;
      const int tail = static_cast<int>(nl % NR);
      for (int64_t p = 0; p < kl; ++p) {
        const float* sp = src + p * hw;
        float* dp = dst + p * NR;
        for (int64_t q = 0; q < np; ++q) copy_short(dp + q * kl * NR, sp + q * NR, NR);
        if (tail) {
          float* dt = dp + np * kl * NR;
          *reinterpret_cast<v8fu*>(dt) = v8f{};
          *reinterpret_cast<v8fu*>(dt + 8) = v8f{};
          copy_short(dt, sp + np * NR, tail);
        }
      }
      return dst;
    }
    for (int64_t q = 0; q * NR < nl; ++q) {
      float* d = dst + q * kl * NR;
      const int cols = static_cast<int>(std::min<int64_t>(NR, nl - q * NR));
      // Runs of the panel's columns that stay inside one image.
      const float* src[NR];
      int off[NR + 1], nrun = 0;
      for (int jj = 0; jj < cols;) {
        const int64_t j = j0 + q * NR + jj, img = j / hw, pix = j % hw;
        src[nrun] = x + (img * c + cbase + k0) * hw + pix;
        off[nrun++] = jj;
        jj += static_cast<int>(std::min<int64_t>(cols - jj, hw - pix));
      }
      off[nrun] = cols;
      for (int64_t p = 0; p < kl; ++p) {
        float* dp = d + p * NR;
        for (int t = 0; t < nrun; ++t) copy_short(dp + off[t], src[t] + p * hw, off[t + 1] - off[t]);
        for (int jj = cols; jj < NR; ++jj) dp[jj] = 0.f;
      }
    }
    return dst;
  }
};

// ---------------------------------------------------------------------------------------------
// Every other conv: the image is first copied, zero-padded, into scratch and split into
// stride_h x stride_w phases (phase (py, px) holds padded rows py, py + sh, ... and columns px,
// px + sw, ...). Then for any tap (ci, ky, kx) the inputs of output (oy, ox) sit at
//   xp + tap_offset(ci, ky, kx) + oy * wq + ox,
// linear in ox within an output row. B's columns are the output pixels, row after row (no columns
// for the pitch's padding: at 7x7, 61 pitch columns would cost 4 panels where 49 pixels take 3 and one
// dot-product column), and each panel row is one 16-float vector copy per run of the panel's pixels
// that lies in one output row: no im2col, no bounds checks.
// ---------------------------------------------------------------------------------------------
struct PadGeom {
  int64_t hq, wq, phase, chan, image;  // image: floats of one padded image of all channels
};

PadGeom pad_geom(const Conv2dShape& s) {
  PadGeom g;
  g.hq = (s.h + s.pad_t + s.pad_b + s.stride_h - 1) / s.stride_h;
  g.wq = (s.w + s.pad_l + s.pad_r + s.stride_w - 1) / s.stride_w;
  g.phase = g.hq * g.wq;
  g.chan = s.stride_h * s.stride_w * g.phase;
  // + NR: the last panel of the last channel reads up to NR - 1 columns past the phase's end.
  g.image = sgemm::round_up(s.c * g.chan + NR, 16);
  return g;
}

// Zeroes the padded rows outside the image among rows [r0, r1) of xp (row r: channel r / (hq sh), padded row
// r % (hq sh); all c hq sh of them for the whole image), in every stride phase; pad_image zeroes the columns left
// and right of the image's rows as it copies them. (A memset of the whole padded image before each copy wrote it
// twice, on one thread: 0.9 MB for ResNet-18's 64 -> 128 stride-2 conv at 56x56.) Threads split rows, not
// channels: the stem convs have 3 input channels, which two threads split 1 : 2.
int64_t padded_rows(const Conv2dShape& s, const PadGeom& g) { return s.c * g.hq * s.stride_h; }

void zero_padding(const Conv2dShape& s, const PadGeom& g, float* xp, int64_t r0, int64_t r1) {
  const int64_t sh = s.stride_h, sw = s.stride_w, rows = g.hq * sh;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t ci = r / rows, row = r % rows;
    if (row >= s.pad_t && row < s.pad_t + s.h) continue;  // an image row: pad_image zeroes its sides
    float* prow = xp + ci * g.chan + (row % sh) * sw * g.phase + (row / sh) * g.wq;
    for (int64_t px = 0; px < sw; ++px) std::fill(prow + px * g.phase, prow + px * g.phase + g.wq, 0.f);
  }
}

// The padding columns left and right of an image row, in every stride phase: phase column q holds padded
// column q * sw + px, and the image covers [pad_l, pad_l + w). A few floats each, so plain stores: as a
// std::fill pair per phase row in zero_padding they took 3.5% of ResNet-18's 128 -> 256 stride-2 conv (perf).
inline void zero_sides(const Conv2dShape& s, const PadGeom& g, float* drow) {
  const int64_t sw = s.stride_w;
  for (int64_t px = 0; px < sw; ++px) {
    float* d = drow + px * g.phase;
    const int64_t left = std::min(g.wq, (s.pad_l - px + sw - 1) / sw);
    const int64_t right = std::min(g.wq, (s.pad_l + s.w - px + sw - 1) / sw);
    for (int64_t q = 0; q < left; ++q) d[q] = 0.f;
    for (int64_t q = right; q < g.wq; ++q) d[q] = 0.f;
  }
}

// Writes input rows [r0, r1) of image `src` (row r: channel r / h, image row r % h; all c h of them for the
// whole image) into xp; the padding stays as zero_padding left it.
void pad_image(const Conv2dShape& s, const PadGeom& g, const float* src, float* xp, int64_t r0, int64_t r1) {
  const int64_t sh = s.stride_h, sw = s.stride_w;
  // No column padding at stride 1: a channel's rows are contiguous in xp too, one copy per channel (and
  // one for all when there is no row padding either): a memcpy per row of the seed CNN's 6x6 conv took
  // more time than its data.
  if (sh == 1 && sw == 1 && s.pad_l == 0 && s.pad_r == 0) {
    if (g.chan == s.h * s.w) {
      if (r1 > r0) std::memcpy(xp + r0 * s.w, src + r0 * s.w, (r1 - r0) * s.w * sizeof(float));
      return;
    }
    for (int64_t r = r0; r < r1;) {
      const int64_t ci = r / s.h, iy = r % s.h, n = std::min(r1 - r, s.h - iy);
      std::memcpy(xp + ci * g.chan + (s.pad_t + iy) * g.wq, src + r * s.w, n * s.w * sizeof(float));
      r += n;
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t ci = r / s.h, iy = r % s.h;
    const float* srow = src + r * s.w;
    const int64_t row = iy + s.pad_t;
    float* drow = xp + ci * g.chan + (row % sh) * sw * g.phase + (row / sh) * g.wq;
    zero_sides(s, g, drow);
    if (sw == 1 && s.w >= 8 && s.w <= 16) {  // two overlapping vectors; a memcpy call costs more
      *reinterpret_cast<v8fu*>(drow + s.pad_l) = *reinterpret_cast<const v8fu*>(srow);
      *reinterpret_cast<v8fu*>(drow + s.pad_l + s.w - 8) = *reinterpret_cast<const v8fu*>(srow + s.w - 8);
      continue;
    }
    if (sw == 1) {
      std::memcpy(drow + s.pad_l, srow, s.w * sizeof(float));
      continue;
    }
    int64_t ix = 0;
    // Stride 2: 16 inputs -> 8 even + 8 odd padded columns by two shuffles. In-model A/B against the
    // scalar loop (epyc2, 1 thread): MobileNetV2's stem 630 -> 556 us, ResNet-18's 1x1 stride-2
    // shortcuts 449 -> 370 and 386 -> 350 us.
    if (sw == 2)
      for (; ix + 16 <= s.w; ix += 16) {
        const v8f a = *reinterpret_cast<const v8fu*>(srow + ix);
        const v8f b = *reinterpret_cast<const v8fu*>(srow + ix + 8);
        const int64_t pc = ix + s.pad_l;  // padded column of srow[ix]
        *reinterpret_cast<v8fu*>(drow + (pc % 2) * g.phase + pc / 2) = cpu::even_lanes(a, b);
        *reinterpret_cast<v8fu*>(drow + ((pc + 1) % 2) * g.phase + (pc + 1) / 2) = cpu::odd_lanes(a, b);
      }
    int64_t px = (ix + s.pad_l) % sw, col = (ix + s.pad_l) / sw;
    for (; ix < s.w; ++ix) {
      drow[px * g.phase + col] = srow[ix];
      if (++px == sw) px = 0, ++col;
    }
  }
}

struct PaddedPackB {
  const Conv2dShape* s;
  const PadGeom* g;
  const float* xp;  // the padded image, at the group's first channel
  // A panel row is one copy per output row it spans: 2-3 on maps under 16 wide, where packing a panel costs
  // about a tile (the seed CNN's 32 -> 64 at 13x13: 17% of the conv at 1 thread, perf), else the default.
  double pack_cost() const { return s->out_w() < NR ? 1.0 : sgemm::kPackCost; }
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    const int64_t rs = s->r * s->s, ow = s->out_w();
    const float* src[sgemm::KC_ONE];
    // Tap (ci, ky, kx) of each depth row, and the stride phase (py, px) and phase-plane row / column (qy, qx)
    // of its offset (ky * dil_h, kx * dil_w), stepped along rather than divided out per row: the divisions
    // were a fifth of the seed CNN's 64 -> 64 conv at 6x6 (K = 576, 16 columns; epyc2, 1 thread).
    const int64_t sh = s->stride_h, sw = s->stride_w;
    int64_t ci = k0 / rs, ky = (k0 % rs) / s->s, kx = k0 % s->s;
    int64_t py = ky * s->dil_h % sh, qy = ky * s->dil_h / sh, px = kx * s->dil_w % sw, qx = kx * s->dil_w / sw;
    const auto step = [](int64_t& ph, int64_t& q, int64_t d, int64_t st) {
      for (ph += d; ph >= st; ph -= st) ++q;
    };
    for (int64_t p = 0; p < kl; ++p) {
      src[p] = xp + ci * g->chan + (py * sw + px) * g->phase + qy * g->wq + qx;
      if (++kx < s->s) {
        step(px, qx, s->dil_w, sw);
        continue;
      }
      kx = px = qx = 0;
      if (++ky < s->r) {
        step(py, qy, s->dil_h, sh);
        continue;
      }
      ky = py = qy = 0;
      ++ci;
    }
    for (int64_t q = 0; q * NR < nl; ++q) {
      float* d = dst + q * kl * NR;
      // Runs of the panel's pixels inside one output row: run t is columns [off[t], off[t + 1]) of the
      // panel and starts at flat position at[t] = oy * wq + ox of the phase plane.
      const int cols = static_cast<int>(std::min<int64_t>(NR, nl - q * NR));
      int64_t at[NR];
      int off[NR + 1], nrun = 0;
      int64_t oy = (j0 + q * NR) / ow, ox = (j0 + q * NR) % ow;
      for (int jj = 0; jj < cols; ++oy, ox = 0) {
        at[nrun] = oy * g->wq + ox;
        off[nrun++] = jj;
        jj += static_cast<int>(std::min<int64_t>(cols - jj, ow - ox));
      }
      off[nrun] = cols;
      if (nrun == 1) {
        for (int64_t p = 0; p < kl; ++p) copy_short(d + p * NR, src[p] + at[0], NR);
        continue;
      }
      // Each run is copied as a whole vector pair: what it writes past its end is overwritten by the
      // next run, or by the next panel row (the last row's spill lands in the next panel, or in the
      // NR floats of slack sgemm keeps after the block); what it reads past its row is the pitch's
      // padding or the image's slack. Columns past `cols` hold such values; the store drops them.
      for (int64_t p = 0; p < kl; ++p)
        for (int t = 0; t < nrun; ++t) copy_short(d + p * NR + off[t], src[p] + at[t], NR);
    }
    return dst;
  }
};

bool is_pointwise(const Conv2dShape& s) {
  return s.r == 1 && s.s == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_t == 0 &&
         s.pad_l == 0 && s.pad_b == 0 && s.pad_r == 0;
}

// Images are spread over threads (one single-threaded GEMM each) when there are enough of them to
// keep every thread equally busy; otherwise each GEMM is split over the threads.
bool per_image_threads(const Conv2dShape& s, int threads) {
  return threads > 1 && s.n >= threads && (s.n % threads == 0 || s.n >= 4 * threads);
}

// Group g's weights in conv2d_cpu_pack's layout.
sgemm::AView packed_group(const Conv2dShape& s, const float* packed, int64_t g) {
  const int64_t kg = s.k / s.groups, K = s.c / s.groups * s.r * s.s;
  return sgemm::AView{packed + g * sgemm::packed_a_floats(kg, K), 0, 0, true};
}

void conv_pointwise(const Conv2dShape& s, const float* x, const float* pw, const float* bias,
                    const float* res, float* y, const Epilogue& e, void* ws) {
  const int64_t hw = s.h * s.w, cg = s.c / s.groups, kg = s.k / s.groups;
  for (int64_t g = 0; g < s.groups; ++g) {
    const sgemm::AView av = packed_group(s, pw, g);
    const PointwisePackB pb{x, s.c, hw, g * cg};
    const sgemm::CView cv{y + g * kg * hw, hw, hw, hw, s.k * hw, bias ? bias + g * kg : nullptr,
                          true, res ? res + g * kg * hw : nullptr, 1.f, e};
    sgemm::gemm(kg, s.n * hw, cg, av, pb, cv, ws, omp_get_max_threads());
  }
}

// 1x1 convs at batch 1 on 10x10 to 14x14 maps whose input channels are at least twice the outputs (MobileNet's
// and EfficientNet's projections) split K over the threads, not M or N: thread t sums over input channels
// [t kb, (t + 1) kb) into its own M x N partial sums; after a barrier each thread adds up the partials of its
// share of the output rows and applies the epilogue. The depthwise conv that feeds such a 1x1 splits its
// channels over the threads too (conv_dw_cblock), so each thread now reads the input that it wrote itself; split
// over pixels or output channels, half of the input crossed cores (C++ harness, 2 threads, each input half
// written by the other core before the call: 384 -> 64 at 14x14 0.65x the time, 576 -> 96 0.74x). In the
// models (Xeon, 2 threads, per-step medians, last build against this one): the 14x14 projections with 192+
// channels per thread 0.86-0.92x (EfficientNet-Lite0's 672 -> 112 0.85), but those with 96-120 per thread
// 1.03-1.05x and the 7x7 ones (N = 49) 0.98-1.05x, so neither splits. The weights are packed in depth blocks of
// kb, one per thread, so the choice is made at pack time under the thread count of the run (a plan packs under
// its own).
int64_t split_k_depth(const Conv2dShape& s, int threads) { return sgemm::ceil_div(s.c, threads); }

bool pointwise_split_k(const Conv2dShape& s, int threads) {
  const int64_t kb = split_k_depth(s, threads), hw = s.h * s.w;
  return threads > 1 && is_pointwise(s) && s.n == 1 && s.groups == 1 && hw >= 100 && hw <= 196 &&
         s.c >= 2 * s.k && kb >= 192 && kb <= sgemm::KC_ONE && (threads - 1) * kb < s.c;  // every thread has depth
}

struct SplitKGeom {
  int64_t kb, part, gemm, per;  // depth per thread; floats of its partial sums, sgemm scratch, all with a row
};

SplitKGeom split_k_geom(const Conv2dShape& s, int threads) {
  SplitKGeom g;
  g.kb = split_k_depth(s, threads);
  g.part = sgemm::round_up(s.k * s.h * s.w, 16);
  g.gemm = sgemm::round_up(sgemm::thread_scratch_floats(s.k, g.kb), 16);
  g.per = g.part + g.gemm + sgemm::round_up(s.h * s.w, 16);
  return g;
}

void conv_pointwise_split_k(const Conv2dShape& s, const float* x, const float* pw, const float* bias,
                            const float* res, float* y, const Epilogue& e, void* ws) {
  const int threads = omp_get_max_threads();
  const SplitKGeom g = split_k_geom(s, threads);
  const int64_t M = s.k, N = s.h * s.w;
  float* base = sgemm::align64(ws);
  const sgemm::StoreFn store = sgemm::pick_store(e.act);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t k0 = t * g.kb, kl = std::min(g.kb, s.c - k0);  // > 0 (pointwise_split_k)
    float* part = base + t * g.per;
    float* row = part + g.part + g.gemm;
    const sgemm::AView av{pw + k0 * sgemm::round_up(M, sgemm::MR), 0, 0, true};  // depth block t
    const PointwisePackB pb{x, s.c, N, k0};
    const sgemm::CView cv{part, N, N, N, N, nullptr, true, nullptr, 1.f, Epilogue{}};  // plain sums
    sgemm::run_tile_range(M, kl, av, pb, cv, 0, M, 0, N, part + g.part);
#pragma omp barrier
    for (int64_t i = M * t / nt; i < M * (t + 1) / nt; ++i) {
      std::copy(base + i * N, base + (i + 1) * N, row);
      for (int u = 1; u < nt; ++u) {
        const float* pu = base + u * g.per + i * N;
        for (int64_t j = 0; j < N; ++j) row[j] += pu[j];
      }
      store(row, 1, static_cast<int>(N), y + i * N, N, res ? res + i * N : nullptr, bias ? bias + i : nullptr,
            nullptr, 1.f, e);
    }
  }
}

// 1x1 at stride > 1 without padding (ResNet's downsampling shortcuts) reads only every sh-th row and sw-th
// column: those pixels are gathered into a compact [n, c, oh, ow] copy that then runs as a pointwise conv.
// Through conv_padded the whole input was memset, copied into sh * sw phases and packed again: 2.1-2.6x
// ONNX Runtime's time on ResNet-18's three shortcuts (Xeon, in-model, 2 threads).
bool is_strided_pointwise(const Conv2dShape& s) {
  return s.r == 1 && s.s == 1 && (s.stride_h > 1 || s.stride_w > 1) && s.pad_t == 0 && s.pad_l == 0 &&
         s.pad_b == 0 && s.pad_r == 0;
}

Conv2dShape gathered_shape(const Conv2dShape& s) {
  Conv2dShape g = s;
  g.h = s.out_h();
  g.w = s.out_w();
  g.stride_h = g.stride_w = 1;
  return g;
}

int64_t gathered_floats(const Conv2dShape& s) { return sgemm::round_up(s.n * s.c * s.out_h() * s.out_w(), 16); }

void conv_strided_pointwise(const Conv2dShape& s, const float* x, const float* pw, const float* bias,
                            const float* res, float* y, const Epilogue& e, void* ws) {
  const int64_t oh = s.out_h(), ow = s.out_w(), sh = s.stride_h, sw = s.stride_w, planes = s.n * s.c;
  float* xg = sgemm::align64(ws);
#pragma omp parallel for schedule(static) if (planes * oh * ow > 16384)
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* src = x + (pl * s.h + oy * sh) * s.w;
      float* dst = xg + (pl * oh + oy) * ow;
      int64_t ox = 0;
      // Stride 2: 16 inputs -> 8 outputs by one shuffle, while the load stays inside the row.
      if (sw == 2)
        for (; ox + 8 <= ow && 2 * ox + 16 <= s.w; ox += 8) {
          const v8f lo = *reinterpret_cast<const v8fu*>(src + 2 * ox);
          const v8f hi = *reinterpret_cast<const v8fu*>(src + 2 * ox + 8);
          *reinterpret_cast<v8fu*>(dst + ox) = cpu::even_lanes(lo, hi);
        }
      for (; ox < ow; ++ox) dst[ox] = src[ox * sw];
    }
  conv_pointwise(gathered_shape(s), xg, pw, bias, res, y, e, xg + gathered_floats(s));
}

// One image, all groups; `threads` threads for each GEMM.
void conv_padded_image(const Conv2dShape& s, const PadGeom& pg, const float* xp, const float* pw,
                       const float* bias, const float* res, float* y, const Epilogue& e,
                       void* gemm_ws, int threads) {
  const int64_t ohw = s.out_h() * s.out_w();
  const int64_t cg = s.c / s.groups, kg = s.k / s.groups, K = cg * s.r * s.s;
  for (int64_t g = 0; g < s.groups; ++g) {
    const sgemm::AView av = packed_group(s, pw, g);
    const PaddedPackB pb{&s, &pg, xp + g * cg * pg.chan};
    const sgemm::CView cv{y + g * kg * ohw, ohw, ohw, ohw, ohw, bias ? bias + g * kg : nullptr,
                          true, res ? res + g * kg * ohw : nullptr, 1.f, e};
    sgemm::gemm(kg, ohw, K, av, pb, cv, gemm_ws, threads);
  }
}

size_t padded_gemm_bytes(const Conv2dShape& s) {
  return sgemm::workspace_bytes(s.k / s.groups, s.c / s.groups * s.r * s.s, 1);
}

void conv_padded(const Conv2dShape& s, const float* x, const float* pw, const float* bias,
                 const float* res, float* y, const Epilogue& e, void* ws) {
  const PadGeom pg = pad_geom(s);
  const int threads = omp_get_max_threads();
  const int64_t in_img = s.c * s.h * s.w, out_img = s.k * s.out_h() * s.out_w();
  float* base = sgemm::align64(ws);
  if (per_image_threads(s, threads)) {
    const size_t gbytes = padded_gemm_bytes(s);
    const int64_t per = pg.image + sgemm::round_up(static_cast<int64_t>(gbytes / sizeof(float)), 16);
#pragma omp parallel num_threads(threads)
    {
      float* xp = base + omp_get_thread_num() * per;
      // Once per call: every image's copy rewrites only the interior.
      zero_padding(s, pg, xp, 0, padded_rows(s, pg));
      std::fill(xp + s.c * pg.chan, xp + pg.image, 0.f);  // the slack past the last channel
#pragma omp for schedule(static)
      for (int64_t b = 0; b < s.n; ++b) {
        pad_image(s, pg, x + b * in_img, xp, 0, s.c * s.h);
        conv_padded_image(s, pg, xp, pw, bias, res ? res + b * out_img : nullptr, y + b * out_img,
                          e, xp + pg.image, 1);
      }
    }
    return;
  }
  float* xp = base;
  std::fill(xp + s.c * pg.chan, xp + pg.image, 0.f);
  for (int64_t b = 0; b < s.n; ++b) {
#pragma omp parallel num_threads(threads) if (threads > 1 && in_img > 16384)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t rows = s.c * s.h, prows = padded_rows(s, pg);
      // once per call: the images' copies rewrite the interior
      if (b == 0) zero_padding(s, pg, xp, prows * t / nt, prows * (t + 1) / nt);
      pad_image(s, pg, x + b * in_img, xp, rows * t / nt, rows * (t + 1) / nt);
    }
    conv_padded_image(s, pg, xp, pw, bias, res ? res + b * out_img : nullptr, y + b * out_img, e,
                      xp + pg.image, threads);
  }
}

// ---------------------------------------------------------------------------------------------
// Depthwise. Each input plane is copied once into scratch, zero-padded and split into stride_w
// phases: phase ph holds padded columns ph, ph + sw, ph + 2 sw, ..., so output column ox of tap kx
// reads phase (kx * dil_w) % sw at column ox + (kx * dil_w) / sw, contiguous in ox. Rows are
// padded by DV extra zero columns so the last DV-wide vector of a row never leaves the buffer.
// ---------------------------------------------------------------------------------------------
struct DwGeom {
  int64_t hp, wq, pitch, plane, acc_pitch;
};

DwGeom dw_geom(const Conv2dShape& s) {
  DwGeom g;
  g.hp = s.h + s.pad_t + s.pad_b;
  const int64_t wp = s.w + s.pad_l + s.pad_r;
  g.wq = (wp + s.stride_w - 1) / s.stride_w;
  g.pitch = sgemm::round_up(g.wq + DV, DV);
  g.plane = s.stride_w * g.hp * g.pitch;
  g.acc_pitch = sgemm::round_up(s.out_w(), DV);
  return g;
}

int64_t dw_thread_floats(const Conv2dShape& s) {
  const DwGeom g = dw_geom(s);
  return sgemm::round_up(g.plane + g.acc_pitch, 16);  // keeps every thread's slice 64-byte aligned
}

template <int R, int S>
void dw_rows(const Conv2dShape& s, const DwGeom& g, const float* plane, const float* wk,
             int64_t oh, int64_t ow, const float* bias_v, const float* res, float* y,
             float* acc, sgemm::StoreFn store, const Epilogue& e) {
  const int rr = R > 0 ? R : static_cast<int>(s.r);
  const int ss = S > 0 ? S : static_cast<int>(s.s);
  const int64_t sw = s.stride_w;
  // Each tap's offset from an output row's first input row, computed once per plane: the phase and
  // column divisions by stride_w used to run per tap and per vector, which held 5x5 layers to
  // 6-20 GFLOP/s.
  constexpr int kMaxTaps = 121;  // 11 x 11; larger kernels fall back to the per-tap formula
  const int taps = rr * ss;
  int64_t off[kMaxTaps];
  const bool tabled = taps <= kMaxTaps;
  if (tabled)
    for (int r = 0; r < rr; ++r)
      for (int q = 0; q < ss; ++q) {
        const int64_t col = q * s.dil_w;
        off[r * ss + q] = ((col % sw) * g.hp + r * s.dil_h) * g.pitch + col / sw;
      }
  for (int64_t oy = 0; oy < oh; ++oy) {
    const float* rowp = plane + oy * s.stride_h * g.pitch;
    int64_t ox = 0;
    if (tabled) {
      // Two vectors per pass share each tap's weight broadcast; the second one only while it is
      // still inside the row (ox + DV < ow), so acc (pitch round_up(ow, DV)) holds both.
      for (; ox + DV < ow; ox += 2 * DV) {
        dvf a0 = {}, a1 = {};
        for (int t = 0; t < (R > 0 ? R * S : taps); ++t) {
          const float* src = rowp + off[t] + ox;
          const float wt = wk[t];
          a0 += *reinterpret_cast<const dvfu*>(src) * wt;
          a1 += *reinterpret_cast<const dvfu*>(src + DV) * wt;
        }
        *reinterpret_cast<dvfu*>(acc + ox) = a0;
        *reinterpret_cast<dvfu*>(acc + ox + DV) = a1;
      }
      for (; ox < ow; ox += DV) {
        dvf a = {};
        for (int t = 0; t < (R > 0 ? R * S : taps); ++t)
          a += *reinterpret_cast<const dvfu*>(rowp + off[t] + ox) * wk[t];
        *reinterpret_cast<dvfu*>(acc + ox) = a;
      }
    } else {
      for (; ox < ow; ox += 8) {
        v8f a = {};
        for (int r = 0; r < rr; ++r) {
          const int64_t row = oy * s.stride_h + r * s.dil_h;
          for (int q = 0; q < ss; ++q) {
            const int64_t col = q * s.dil_w;
            const float* src = plane + ((col % sw) * g.hp + row) * g.pitch + col / sw + ox;
            a += *reinterpret_cast<const v8fu*>(src) * wk[r * ss + q];
          }
        }
        *reinterpret_cast<v8f*>(acc + ox) = a;
      }
    }
    store(acc, 1, static_cast<int>(ow), y + oy * ow, 0, res ? res + oy * ow : nullptr, bias_v,
          nullptr, 1.f, e);
  }
}

void conv_depthwise(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    const float* res, float* y, const Epilogue& e, void* ws) {
  const int64_t oh = s.out_h(), ow = s.out_w(), mult = s.k / s.c;
  const DwGeom g = dw_geom(s);
  const int64_t per = dw_thread_floats(s);
  float* base = sgemm::align64(ws);
  const sgemm::StoreFn store = sgemm::pick_store(e.act);
  const int64_t planes = s.n * s.c;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), planes));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    float* plane = base + omp_get_thread_num() * per;
    float* acc = plane + g.plane;
    // Every plane writes the same interior positions, so the padding is zeroed once.
    std::memset(plane, 0, g.plane * sizeof(float));
    const int64_t sw = s.stride_w;
#pragma omp for schedule(static)
    for (int64_t pi = 0; pi < planes; ++pi) {
      const int64_t b = pi / s.c, ci = pi % s.c;
      const float* src = x + pi * s.h * s.w;
      for (int64_t iy = 0; iy < s.h; ++iy) {
        const float* srow = src + iy * s.w;
        float* drow = plane + (iy + s.pad_t) * g.pitch;
        if (sw == 1) {
          std::memcpy(drow + s.pad_l, srow, s.w * sizeof(float));
          continue;
        }
        int64_t ph = s.pad_l % sw, col = s.pad_l / sw;
        for (int64_t ix = 0; ix < s.w; ++ix) {
          drow[ph * g.hp * g.pitch + col] = srow[ix];
          if (++ph == sw) ph = 0, ++col;
        }
      }
      for (int64_t m = 0; m < mult; ++m) {
        const int64_t oc = ci * mult + m;
        const int64_t o = (b * s.k + oc) * oh * ow;
        const float* wk = w + oc * s.r * s.s;
        const float* bv = bias ? bias + oc : nullptr;
        const float* rp = res ? res + o : nullptr;
        if (s.r == 3 && s.s == 3)
          dw_rows<3, 3>(s, g, plane, wk, oh, ow, bv, rp, y + o, acc, store, e);
        else if (s.r == 5 && s.s == 5)
          dw_rows<5, 5>(s, g, plane, wk, oh, ow, bv, rp, y + o, acc, store, e);
        else
          dw_rows<0, 0>(s, g, plane, wk, oh, ow, bv, rp, y + o, acc, store, e);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Depthwise on small output maps (multiplier 1): vectors run across CB channels (16 with AVX-512, else
// 8) instead of along a row, so a 7-wide output row fills its vectors and a stride needs no phase split.
// Each block of CB channels is copied once into a zero-padded pixel-major tile [hp][wp][CB]; every tap of
// output (oy, ox) is then one aligned CB-channel vector at a fixed offset. Results go to a [oh*ow][CB]
// tile and are transposed back into channel planes, with the epilogue applied in the transposes (no residual)
// or by the store per plane (residual). 16-channel blocks
// against 8 (paired A/B, Xeon, 1 thread): EfficientNet-Lite0's 5x5 layers 0.73-0.89x the time, MobileNetV2's
// 3x3 at 7x7 0.77, 14 -> 7 stride 2 0.91.
// ---------------------------------------------------------------------------------------------
constexpr int CB = DV;           // channels per block (one vector: 16 with AVX-512, else 8)
constexpr int TP = 8;            // pixels (and channels) per in-register transpose
constexpr int kMaxCbTaps = 121;  // 11 x 11: the tap offsets live on the stack
constexpr int kCbGroup = 8;      // output pixels computed together

bool dw3_fast(const Conv2dShape& s);

bool dw_cblock(const Conv2dShape& s) {
  // On narrow outputs the row kernels leave lanes of their last vector idle and pay their per-plane
  // setup (at stride 2, a scalar phase-splitting copy) for few outputs. EfficientNet-Lite0's 5x5
  // layers, epyc2, 1 thread, row kernel -> here (scalar transposes then): 144 channels 56 -> 28 stride 2
  // 1.05 -> 0.66 ms, 240 at 28 0.71 -> 0.69, 672 14 -> 7 0.50 -> 0.29, 1152 at 7 0.56 -> 0.38. 3x3 layers
  // too since rows under 8 wide load whole vectors (in-model A/B against conv_dw3, 1 thread: MobileNetV2's
  // 960 channels at 7x7 117 -> 87 us, 384 at 14x14 94 -> 83, 192 at 28x28 123 -> 119; 2 threads even at
  // 14x14 and 28x28, 86 -> 71 at 7x7).
  const int64_t taps = s.r * s.s;
#if EV_SGEMM_AVX512
  // conv_dw3's 16-lane rows at stride 1 and 28-31 wide (7/8 of their lanes filled): paired A/B against this
  // kernel (Xeon, 2 threads, 3x3), MobileNetV2's 192 channels at 28x28 0.81x the time. Since this kernel
  // computes 8-pixel groups and fuses the epilogue, not at 14x14 (576, 480, 384 channels: here 0.78-0.84x of
  // conv_dw3's time) nor at stride 2 (144 channels 56 -> 28: 0.86-0.94x, 240 28 -> 14: 0.94x).
  if (dw3_fast(s) && s.stride_w == 1 && s.out_w() >= 28) return false;
#endif
  return s.k == s.c && s.out_w() < 32 && taps >= 9 && taps <= kMaxCbTaps;
}

struct CbGeom {
  int64_t hp, wp, tile, out, taps;
};

CbGeom cb_geom(const Conv2dShape& s) {
  CbGeom g;
  g.hp = s.h + s.pad_t + s.pad_b;
  g.wp = s.w + s.pad_l + s.pad_r;
  g.tile = g.hp * g.wp * CB;
  g.out = s.out_h() * s.out_w() * CB;
  g.taps = s.r * s.s;
  return g;
}

int64_t cb_thread_floats(const Conv2dShape& s) {
  const CbGeom g = cb_geom(s);
  // tile, output tile, the block's weights (all 64-byte aligned), the block's CB output planes
  return sgemm::round_up(g.tile + g.out + g.taps * CB + CB * s.out_h() * s.out_w(), 16);
}

// In-register 8x8 transpose: afterwards r[j][i] is the former r[i][j] (unpack, shuffle, then swap the
// 128-bit halves: 24 shuffles for 64 floats, where scalar stride-8 copies cost one move each).
inline __attribute__((always_inline)) void transpose8(v8f* r) {
  const v8f t0 = __builtin_shufflevector(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);
  const v8f t1 = __builtin_shufflevector(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
  const v8f t2 = __builtin_shufflevector(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);
  const v8f t3 = __builtin_shufflevector(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
  const v8f t4 = __builtin_shufflevector(r[4], r[5], 0, 8, 1, 9, 4, 12, 5, 13);
  const v8f t5 = __builtin_shufflevector(r[4], r[5], 2, 10, 3, 11, 6, 14, 7, 15);
  const v8f t6 = __builtin_shufflevector(r[6], r[7], 0, 8, 1, 9, 4, 12, 5, 13);
  const v8f t7 = __builtin_shufflevector(r[6], r[7], 2, 10, 3, 11, 6, 14, 7, 15);
  const v8f u0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
  const v8f u1 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
  const v8f u2 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
  const v8f u3 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
  const v8f u4 = __builtin_shufflevector(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13);
  const v8f u5 = __builtin_shufflevector(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15);
  const v8f u6 = __builtin_shufflevector(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13);
  const v8f u7 = __builtin_shufflevector(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15);
  r[0] = __builtin_shufflevector(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11);
  r[1] = __builtin_shufflevector(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11);
  r[2] = __builtin_shufflevector(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11);
  r[3] = __builtin_shufflevector(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11);
  r[4] = __builtin_shufflevector(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15);
  r[5] = __builtin_shufflevector(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15);
  r[6] = __builtin_shufflevector(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15);
  r[7] = __builtin_shufflevector(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15);
}

// The epilogue without a residual, fused into the write-back: y's channel planes [lanes][ohw] (at yb) =
// act(out + bias) from the pixel-major tile out[ohw][CB], bias a CB vector across the channels, applied to
// each 8 x 8 block in registers before its transpose. store_final's arithmetic (alpha 1), lane for lane.
template <Act ACT>
void cb_write(const float* out, int64_t ohw, const float* bias, int lanes, float* yb, float al, float be) {
  const int64_t pvec = ohw / TP * TP;
  for (int64_t i = 0; i < pvec; i += TP)
    for (int h = 0; h < CB; h += TP) {
      const v8f bh = *reinterpret_cast<const v8f*>(bias + h);
      v8f r[TP];
      for (int q = 0; q < TP; ++q)
        r[q] = cpu::activate8<ACT>(*reinterpret_cast<const v8f*>(out + (i + q) * CB + h) + bh, al, be);
      transpose8(r);
      for (int l = 0; l < TP && h + l < lanes; ++l) *reinterpret_cast<v8fu*>(yb + (h + l) * ohw + i) = r[l];
    }
  for (int64_t i = pvec; i < ohw; ++i)
    for (int h = 0; h < CB; h += TP) {
      const v8f r = cpu::activate8<ACT>(*reinterpret_cast<const v8f*>(out + i * CB + h) +
                                            *reinterpret_cast<const v8f*>(bias + h), al, be);
      for (int l = 0; l < TP && h + l < lanes; ++l) yb[(h + l) * ohw + i] = r[l];
    }
}

using CbWriteFn = void (*)(const float*, int64_t, const float*, int, float*, float, float);

CbWriteFn pick_cb_write(Act a) {
  return sgemm::with_act(a, [](auto act) -> CbWriteFn {
    constexpr Act A = decltype(act)::value;
    if constexpr (!cpu::has_vector_act<A>())
      return nullptr;
    else
      return cb_write<A>;
  });
}

void conv_dw_cblock(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    const float* res, float* y, const Epilogue& e, void* ws) {
  const int64_t oh = s.out_h(), ow = s.out_w(), ohw = oh * ow, hw = s.h * s.w;
  const CbGeom g = cb_geom(s);
  const int64_t per = cb_thread_floats(s);
  float* base = sgemm::align64(ws);
  const sgemm::StoreFn store = sgemm::pick_store(e.act);
  const CbWriteFn fused = res ? nullptr : pick_cb_write(e.act);
  const int64_t cblocks = (s.c + CB - 1) / CB, blocks = s.n * cblocks;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), blocks));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    float* tile = base + omp_get_thread_num() * per;
    float* out = tile + g.tile;
    float* wb = out + g.out;
    float* planes = wb + g.taps * CB;  // CB output planes of ohw floats
    // Interior positions are rewritten by every block; the padding stays zero.
    std::memset(tile, 0, g.tile * sizeof(float));
    int64_t offp[kMaxCbTaps];
    for (int64_t r = 0; r < s.r; ++r)
      for (int64_t q = 0; q < s.s; ++q) offp[r * s.s + q] = (r * s.dil_h * g.wp + q * s.dil_w) * CB;
    const int taps = static_cast<int>(g.taps);
#pragma omp for schedule(static)
    for (int64_t bi = 0; bi < blocks; ++bi) {
      const int64_t b = bi / cblocks, c0 = bi % cblocks * CB;
      const int lanes = static_cast<int>(std::min<int64_t>(CB, s.c - c0));
      if (lanes < CB) {  // the last block: idle lanes read zeros and are never stored
        std::memset(tile, 0, g.tile * sizeof(float));
        std::memset(wb, 0, g.taps * CB * sizeof(float));
      }
      const float* src = x + (b * s.c + c0) * hw;
      // Full blocks: 8 pixels of 8 channel planes at a time, transposed in registers (CB / 8 of them per
      // block). A row's last pixels (all of them in rows under 8 wide) come from one more 8-pixel load: ending
      // at the row's end when the row is that wide (pixels loaded twice are the same values), else running on
      // into the next row, whose pixels are not stored; only a load that would pass the end of x goes scalar.
      // Scalar tails cost as much as the arithmetic: 576 channels 14 -> 7 at stride 2 spent ~45% there.
      const int64_t wvec = lanes == CB ? s.w / TP * TP : 0;
      const float* x_end = x + s.n * s.c * hw;
      for (int64_t iy = 0; iy < s.h; ++iy) {
        float* d = tile + ((iy + s.pad_t) * g.wp + s.pad_l) * CB;
        const float* sr = src + iy * s.w;
        const auto put8 = [&](int64_t ix, int64_t q0, int64_t q1) {  // pixels ix + [q0, q1)
          for (int h = 0; h < CB; h += TP) {  // channels h .. h + 7
            v8f r[TP];
            for (int l = 0; l < TP; ++l) r[l] = *reinterpret_cast<const v8fu*>(sr + (h + l) * hw + ix);
            transpose8(r);
            for (int64_t q = q0; q < q1; ++q) *reinterpret_cast<v8f*>(d + (ix + q) * CB + h) = r[q];
          }
        };
        for (int64_t ix = 0; ix < wvec; ix += TP) put8(ix, 0, TP);
        int64_t ix = wvec;
        if (lanes == CB && ix < s.w) {
          if (s.w >= TP) {
            put8(s.w - TP, TP - (s.w - ix), TP);
            ix = s.w;
          } else if (sr + (CB - 1) * hw + ix + TP <= x_end) {
            put8(ix, 0, s.w - ix);
            ix = s.w;
          }
        }
        for (int l = 0; l < lanes; ++l)
          for (int64_t i = ix; i < s.w; ++i) d[i * CB + l] = sr[l * hw + i];
      }
      for (int l = 0; l < lanes; ++l) {
        const float* wk = w + (c0 + l) * g.taps;
        for (int t = 0; t < taps; ++t) wb[t * CB + l] = wk[t];
      }
      const dvf* wv = reinterpret_cast<const dvf*>(wb);
      if (ohw >= kCbGroup) {
        // kCbGroup output pixels at a time, consecutive in the flattened map (across row ends), each tap's
        // weight vector shared by all of them: 8 independent multiply-add chains. The last group ends at the
        // map's end, overlapping the one before (pixels computed twice are the same). Per row in fours plus
        // single pixels, a 7-wide map ran 3 of its 7 pixels as one latency-bound chain each.
        const int64_t row_step = s.stride_h * g.wp * CB, step = s.stride_w * CB;
        for (int64_t i0 = 0; i0 < ohw; i0 += kCbGroup) {
          const int64_t i = std::min(i0, ohw - kCbGroup);
          int64_t at[kCbGroup];  // where each pixel's window starts in the tile
          int64_t oy = i / ow, ox = i % ow;
          for (int j = 0; j < kCbGroup; ++j) {
            at[j] = oy * row_step + ox * step;
            if (++ox == ow) ox = 0, ++oy;
          }
          dvf a[kCbGroup] = {};
          for (int t = 0; t < taps; ++t) {
            const float* q = tile + offp[t];
            const dvf wt = wv[t];
#pragma GCC unroll 8
            for (int j = 0; j < kCbGroup; ++j) a[j] += *reinterpret_cast<const dvf*>(q + at[j]) * wt;
          }
#pragma GCC unroll 8
          for (int j = 0; j < kCbGroup; ++j) reinterpret_cast<dvf*>(out + i * CB)[j] = a[j];
        }
      } else {  // maps under 8 pixels: per row, in fours then singly
        for (int64_t oy = 0; oy < oh; ++oy) {
          const float* row = tile + oy * s.stride_h * g.wp * CB;
          const int64_t step = s.stride_w * CB;
          int64_t ox = 0;
          for (; ox + 4 <= ow; ox += 4) {  // four outputs share each tap's weight vector
            const float* p = row + ox * step;
            dvf a0 = {}, a1 = {}, a2 = {}, a3 = {};
            for (int t = 0; t < taps; ++t) {
              const float* q = p + offp[t];
              const dvf wt = wv[t];
              a0 += *reinterpret_cast<const dvf*>(q) * wt;
              a1 += *reinterpret_cast<const dvf*>(q + step) * wt;
              a2 += *reinterpret_cast<const dvf*>(q + 2 * step) * wt;
              a3 += *reinterpret_cast<const dvf*>(q + 3 * step) * wt;
            }
            dvf* o = reinterpret_cast<dvf*>(out + (oy * ow + ox) * CB);
            o[0] = a0; o[1] = a1; o[2] = a2; o[3] = a3;
          }
          for (; ox < ow; ++ox) {
            const float* p = row + ox * step;
            dvf a = {};
            for (int t = 0; t < taps; ++t) a += *reinterpret_cast<const dvf*>(p + offp[t]) * wv[t];
            *reinterpret_cast<dvf*>(out + (oy * ow + ox) * CB) = a;
          }
        }
      }
      if (fused) {
        // Without a residual: bias and activation applied in the transposes that write y (through planes
        // and a store per channel, the stores were a quarter of the time at 7x7: 1152 channels, 5x5, perf).
        alignas(64) float bvec[CB] = {};
        for (int l = 0; l < lanes; ++l) bvec[l] = bias ? bias[c0 + l] : 0.f;
        fused(out, ohw, bvec, lanes, y + (b * s.k + c0) * ohw, e.alpha, e.beta);
        continue;
      }
      // Back to channel planes, 8 pixels x 8 channels at a time through the same transpose, then the
      // epilogue per plane.
      const int64_t pvec = ohw / TP * TP;
      for (int64_t i = 0; i < pvec; i += TP)
        for (int h = 0; h < CB; h += TP) {
          v8f r[TP];
          for (int q = 0; q < TP; ++q) r[q] = *reinterpret_cast<const v8f*>(out + (i + q) * CB + h);
          transpose8(r);
          for (int l = 0; l < TP; ++l) *reinterpret_cast<v8fu*>(planes + (h + l) * ohw + i) = r[l];
        }
      for (int l = 0; l < lanes; ++l) {
        float* plane = planes + l * ohw;
        for (int64_t i = pvec; i < ohw; ++i) plane[i] = out[i * CB + l];
        const int64_t o = (b * s.k + c0 + l) * ohw;
        store(plane, 1, static_cast<int>(ohw), y + o, 0, res ? res + o : nullptr,
              bias ? bias + c0 + l : nullptr, nullptr, 1.f, e);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Depthwise 3x3, dilation 1, stride 1 or 2 in both dims (the MobileNet/EfficientNet layers). Each
// needed input row is copied once into a zero-padded row buffer; at stride 2 the copy splits the
// row into even and odd padded columns, so every tap of 8 adjacent outputs is one contiguous vector
// load and the row kernel has no border branches. Planes whose padded rows fit in 64 KB are
// buffered whole (two output rows per pass share their input rows); larger ones go through a ring
// of three row buffers that stays in L1. Rows outside the image are zero rows. The epilogue is
// applied by one store per block of output rows, packed at pitch ow.
// ---------------------------------------------------------------------------------------------
bool dw3_fast(const Conv2dShape& s) {
  return s.r == 3 && s.s == 3 && s.dil_h == 1 && s.dil_w == 1 && s.stride_h == s.stride_w &&
         (s.stride_h == 1 || s.stride_h == 2);
}

typedef float v4fu __attribute__((vector_size(16), aligned(4)));


struct Dw3Geom {
  int64_t pitch, row;  // row: floats of one buffered row (stride_w phases of `pitch`)
  int64_t blk;         // output rows per epilogue store: small planes take one call, not one per row
  int64_t acc;         // floats of the accumulator: blk rows packed at pitch ow, + a vector tail
  int64_t need;        // padded rows the outputs read
  bool whole;          // small planes: all needed rows buffered at once, no ring bookkeeping
  int64_t buf;         // floats of the row buffers: zero row + ring, or the whole padded plane
};

Dw3Geom dw3_geom(const Conv2dShape& s) {
  Dw3Geom g;
  const int64_t ow = s.out_w();
  // A vector at ox reads up to phase column ox + DV - 1 + 2 (stride 1) or ox + DV - 1 + 1 (stride 2).
  g.pitch = sgemm::round_up(ow, DV) + DV;
  g.row = s.stride_w * g.pitch;
  g.blk = std::max<int64_t>(1, 2048 / ow);
  g.acc = sgemm::round_up(g.blk * ow + DV, 16);
  g.need = (s.out_h() - 1) * s.stride_h + 3;
  g.whole = g.need * g.row <= 16384;
  g.buf = g.whole ? g.need * g.row : 4 * g.row;
  return g;
}

int64_t dw3_thread_floats(const Conv2dShape& s) {
  const Dw3Geom g = dw3_geom(s);
  return sgemm::round_up(g.buf + g.acc, 16);
}

// Copies input row `src` into buffered row `d` (padded column pc = pad_l + ix; at stride 2 even
// pc go to d[pc / 2], odd to d[pitch + pc / 2]). Only columns some output reads are written; the
// other positions are the same for every row and stay zero from the thread's initial memset.
// Inlined: called once per row, and short rows make the call itself a large part of the cost.
inline __attribute__((always_inline)) void dw3_fill(const Conv2dShape& s, const Dw3Geom& g,
                                                    int64_t ow, const float* __restrict src,
                                                    float* __restrict d) {
  const int64_t w = s.w, pl = s.pad_l;
  if (s.stride_w == 1) {
    // Inline vector moves: rows are short and a memmove call per row costs more than the copy.
    const int64_t n = std::min<int64_t>(w, ow + 2 - pl);
    float* dp = d + pl;
    int64_t ix = 0;
    for (; ix + DV <= n; ix += DV)
      *reinterpret_cast<dvfu*>(dp + ix) = *reinterpret_cast<const dvfu*>(src + ix);
    if (DV > 8 && ix + 8 <= n) {
      *reinterpret_cast<v8fu*>(dp + ix) = *reinterpret_cast<const v8fu*>(src + ix);
      ix += 8;
    }
    if (ix + 4 <= n) {
      *reinterpret_cast<v4fu*>(dp + ix) = *reinterpret_cast<const v4fu*>(src + ix);
      ix += 4;
    }
    // Unrolled, not a loop: GCC turns a copy loop into a memmove call.
    if (ix < n) dp[ix] = src[ix];
    if (ix + 1 < n) dp[ix + 1] = src[ix + 1];
    if (ix + 2 < n) dp[ix + 2] = src[ix + 2];
    return;
  }
  float* __restrict e = d;
  float* __restrict o = d + g.pitch;
  // even: ix = 2j - pl, j <= ow; odd: ix = 2j + 1 - pl, j < ow.
  const int64_t je0 = (pl + 1) / 2, je1 = std::min<int64_t>(ow + 1, (w + 1 + pl) / 2);
  const int64_t jo0 = pl / 2, jo1 = std::min<int64_t>(ow, (w + pl) / 2);
  const float* se = src - pl;
  const float* so = src + 1 - pl;
  const int64_t j0 = std::max(je0, jo0);
  int64_t j = j0;
  const int64_t jb = std::min(je1, jo1);
  for (int64_t k = je0; k < std::min(j, je1); ++k) e[k] = se[2 * k];
  for (int64_t k = jo0; k < std::min(j, jo1); ++k) o[k] = so[2 * k];
  // Where both phases are read: 16 input floats src[2j - pl ..] -> 8 even + 8 odd columns with
  // two vector shuffles (j >= je0 keeps the first load at or after src[0]; the last load must end
  // by src[w - 1]). The last vector may overlap the previous one instead of leaving a scalar tail.
  const int64_t jlast = std::min(jb - 8, w + pl >= 16 ? (w + pl - 16) / 2 : int64_t{-1});
  const auto split = [&](int64_t jj) {
    const float* p = src + 2 * jj - pl;
    const v8f lo = *reinterpret_cast<const v8fu*>(p);
    const v8f hi = *reinterpret_cast<const v8fu*>(p + 8);
    *reinterpret_cast<v8fu*>(e + jj) = cpu::even_lanes(lo, hi);
    *reinterpret_cast<v8fu*>(o + jj) = cpu::odd_lanes(lo, hi);
  };
#if EV_SGEMM_AVX512
  // 32 input floats -> 16 even + 16 odd columns per pair of permutes while a whole one fits.
  const int64_t jlast16 = std::min(jb - 16, w + pl >= 32 ? (w + pl - 32) / 2 : int64_t{-1});
  for (; j <= jlast16; j += 16) {
    const float* p = src + 2 * j - pl;
    const dvf lo = *reinterpret_cast<const dvfu*>(p);
    const dvf hi = *reinterpret_cast<const dvfu*>(p + 16);
    *reinterpret_cast<dvfu*>(e + j) = cpu::even_lanes(lo, hi);
    *reinterpret_cast<dvfu*>(o + j) = cpu::odd_lanes(lo, hi);
  }
#endif
  if (jlast >= j0) {
    for (; j <= jlast; j += 8) split(j);
    if (j < jlast + 8) {
      split(jlast);
      j = jlast + 8;
    }
  }
  for (int64_t k = j; k < je1; ++k) e[k] = se[2 * k];
  for (int64_t k = j; k < jo1; ++k) o[k] = so[2 * k];
}

// One plane's 3x3 weights, and where in a buffered row tap q of output column ox reads: phase q % st at
// column ox + q / st, offset 0, p1, p2 from column ox of phase 0.
struct Dw3Taps {
  float w[9];
  int64_t p1, p2;
};

Dw3Taps dw3_taps(const Dw3Geom& g, int64_t st, const float* wk) {
  Dw3Taps t;
  for (int i = 0; i < 9; ++i) t.w[i] = wk[i];
  t.p1 = st == 1 ? 1 : g.pitch;
  t.p2 = st == 1 ? 2 : 1;
  return t;
}

// One output row from padded rows r0, r1, r2: out[ox] for ox < ow, plus up to DV - 1 floats past them
// (a caller that packs rows at pitch ow lets the next row overwrite them).
inline __attribute__((always_inline)) void dw3_row(const Dw3Taps& t, int64_t ow, const float* r0,
                                                   const float* r1, const float* r2, float* out) {
  for (int64_t ox = 0; ox < ow; ox += DV) {
    const auto ld = [&](const float* r, int64_t off) -> dvf {
      return *reinterpret_cast<const dvfu*>(r + off + ox);
    };
    dvf a = ld(r0, 0) * t.w[0] + ld(r0, t.p1) * t.w[1] + ld(r0, t.p2) * t.w[2];
    a += ld(r1, 0) * t.w[3] + ld(r1, t.p1) * t.w[4] + ld(r1, t.p2) * t.w[5];
    a += ld(r2, 0) * t.w[6] + ld(r2, t.p1) * t.w[7] + ld(r2, t.p2) * t.w[8];
    *reinterpret_cast<dvfu*>(out + ox) = a;
  }
}

// Output rows [oy0, oy1) of one plane whose padded rows are all buffered, padded row oy0 * st at rb
// and the next ones g.row apart, into out packed at pitch ow (spilling up to DV - 1 floats past the
// last row). Two output rows per pass share the input rows between them; their columns go right to
// left so the first row's spill into the second row's start is overwritten.
inline __attribute__((always_inline)) void dw3_buffered_rows(const Dw3Geom& g, const Dw3Taps& t,
                                                             int64_t ow, int64_t st, const float* rb,
                                                             int64_t oy0, int64_t oy1, float* out) {
  int64_t oy = oy0;
  for (; oy + 2 <= oy1; oy += 2) {
    const float* r0 = rb + (oy - oy0) * st * g.row;
    const float *r1 = r0 + g.row, *r2 = r1 + g.row, *r3 = r2 + g.row;
    const float* r4 = r3 + g.row;
    const float *q0 = st == 1 ? r1 : r2, *q1 = st == 1 ? r2 : r3, *q2 = st == 1 ? r3 : r4;
    float* arow = out + (oy - oy0) * ow;
    for (int64_t ox = (ow - 1) / DV * DV; ox >= 0; ox -= DV) {
      const auto ld = [&](const float* r, int64_t off) -> dvf {
        return *reinterpret_cast<const dvfu*>(r + off + ox);
      };
      const float* w = t.w;
      dvf a = ld(r0, 0) * w[0] + ld(r0, t.p1) * w[1] + ld(r0, t.p2) * w[2];
      dvf c = ld(q0, 0) * w[0] + ld(q0, t.p1) * w[1] + ld(q0, t.p2) * w[2];
      a += ld(r1, 0) * w[3] + ld(r1, t.p1) * w[4] + ld(r1, t.p2) * w[5];
      c += ld(q1, 0) * w[3] + ld(q1, t.p1) * w[4] + ld(q1, t.p2) * w[5];
      a += ld(r2, 0) * w[6] + ld(r2, t.p1) * w[7] + ld(r2, t.p2) * w[8];
      c += ld(q2, 0) * w[6] + ld(q2, t.p1) * w[7] + ld(q2, t.p2) * w[8];
      *reinterpret_cast<dvfu*>(arow + ox) = a;
      *reinterpret_cast<dvfu*>(arow + ow + ox) = c;
    }
  }
  if (oy < oy1) {
    const float* r0 = rb + (oy - oy0) * st * g.row;
    dw3_row(t, ow, r0, r0 + g.row, r0 + 2 * g.row, out + (oy - oy0) * ow);
  }
}

void conv_dw3(const Conv2dShape& s, const float* x, const float* w, const float* bias,
              const float* res, float* y, const Epilogue& e, void* ws) {
  const int64_t oh = s.out_h(), ow = s.out_w(), mult = s.k / s.c, st = s.stride_h;
  const Dw3Geom g = dw3_geom(s);
  const int64_t per = dw3_thread_floats(s);
  float* base = sgemm::align64(ws);
  const sgemm::StoreFn store = sgemm::pick_store(e.act);
  const int64_t planes = s.n * s.c;
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), planes));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    // Row buffers (rows outside the image, left/right padding: never written, so zero from here
    // on). Ring mode: zero row, then three slots; whole mode: padded row pr at pr * g.row.
    float* zero = base + omp_get_thread_num() * per;
    float* ring = zero + g.row;
    float* acc = zero + g.buf;
    std::memset(zero, 0, g.buf * sizeof(float));
#pragma omp for schedule(static)
    for (int64_t pi = 0; pi < planes; ++pi) {
      const int64_t b = pi / s.c, ci = pi % s.c;
      const float* src = x + pi * s.h * s.w;
      if (g.whole)
        for (int64_t iy = std::max<int64_t>(0, -s.pad_t);
             iy < std::min<int64_t>(s.h, g.need - s.pad_t); ++iy)
          dw3_fill(s, g, ow, src + iy * s.w, zero + (iy + s.pad_t) * g.row);
      for (int64_t m = 0; m < mult; ++m) {
        const int64_t oc = ci * mult + m;
        const Dw3Taps t = dw3_taps(g, st, w + oc * 9);
        const int64_t o = (b * s.k + oc) * oh * ow;
        int64_t next = 0;   // first padded row not yet in the ring
        int64_t slot0 = 0;  // (oy * st) % 3
        for (int64_t oy0 = 0; oy0 < oh; oy0 += g.blk) {
          const int64_t oy1 = std::min(oh, oy0 + g.blk);
          if (g.whole) {
            dw3_buffered_rows(g, t, ow, st, zero + oy0 * st * g.row, oy0, oy1, acc);
          } else {
            for (int64_t oy = oy0; oy < oy1; ++oy) {
              const float* rows[3];
              for (int r = 0; r < 3; ++r) {
                const int64_t pr = oy * st + r, iy = pr - s.pad_t;
                if (iy < 0 || iy >= s.h) {
                  rows[r] = zero;
                  continue;
                }
                // Padded row pr lives in slot pr % 3 (slot0 + r, wrapped: no division).
                const int64_t sl = slot0 + r >= 3 ? slot0 + r - 3 : slot0 + r;
                float* sp = ring + sl * g.row;
                if (pr >= next) dw3_fill(s, g, ow, src + iy * s.w, sp);
                rows[r] = sp;
              }
              next = oy * st + 3;
              slot0 += st;
              if (slot0 >= 3) slot0 -= 3;
              dw3_row(t, ow, rows[0], rows[1], rows[2], acc + (oy - oy0) * ow);
            }
          }
          const int64_t oo = o + oy0 * ow;
          store(acc, 1, static_cast<int>((oy1 - oy0) * ow), y + oo, 0, res ? res + oo : nullptr,
                bias ? bias + oc : nullptr, nullptr, 1.f, e);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A depthwise 3x3 conv and the 1x1 conv that reads its output, as one step, optionally with the 1x1
// expand conv that makes its input (MobileNet's and EfficientNet's inverted-residual blocks: expand ->
// depthwise -> projection). As separate steps each intermediate (MobileNetV2: 96 x 112 x 112 floats,
// 4.8 MB, out of the expand conv) goes out past L2 and is read back, and the convs split their work
// differently between the threads (pixels, planes, pixels), so half of it crosses cores. Here each
// thread takes a range of output rows and works through it in bands: the expand conv's GEMM computes
// the input rows the band's depthwise reads (the rows it shares with the previous band are moved,
// not recomputed) into a buffer, the depthwise output of every channel goes into a tile, and the 1x1
// conv's GEMM reads that tile (each GEMM one thread's run_tile_range); all of it stays in L2.
// ---------------------------------------------------------------------------------------------
// (Its maps are 28+ columns wide, so its 1x1 weights are never packed for pointwise_split_k.)
bool dw_pw_band(const DwPwShape& d) {
  return kernel_fits(d.dw) && d.dw.k == d.dw.c && dw3_fast(d.dw) && !dw_cblock(d.dw) && d.pw.groups == 1 &&
         (!d.expand || d.ex.groups == 1);
}

struct BandGeom {
  Dw3Geom g;        // the depthwise rows of one band (whole mode: every padded row it reads buffered)
  int64_t rows;     // output rows per band
  int64_t tile;     // floats of the depthwise output tile: c x rows x ow, + a vector of spill
  int64_t ecap;     // with an expand conv: floats per channel of its output buffer (g.need input rows)
  int64_t per;      // floats of one thread's scratch: row buffers, tile, expanded rows, GEMM scratch
};

BandGeom band_geom(const DwPwShape& d) {
  const Conv2dShape& dw = d.dw;
  BandGeom b;
  const int64_t ow = dw.out_w(), st = dw.stride_h;
  // About 256 KB of depthwise output per band, or with an expand conv 512 KB of depthwise output and
  // expanded input rows (st rows of w per output row) together: in L2 with the GEMMs' packed B.
  const int64_t per_row = d.expand ? ow + st * dw.w : ow;
  b.rows = std::max<int64_t>(1, std::min(dw.out_h(), (d.expand ? 131072 : 65536) / (dw.c * per_row)));
  Dw3Geom& g = b.g;
  g.pitch = sgemm::round_up(ow, DV) + DV;
  g.row = dw.stride_w * g.pitch;
  g.need = (b.rows - 1) * st + 3;
  g.whole = true;
  g.buf = g.need * g.row;
  b.tile = sgemm::round_up(dw.c * b.rows * ow + DV, 16);
  b.ecap = d.expand ? std::min(g.need, dw.h) * dw.w : 0;
  const int64_t gemm = std::max(sgemm::thread_scratch_floats(d.pw.k, d.pw.c),
                                d.expand ? sgemm::thread_scratch_floats(d.ex.k, d.ex.c) : 0);
  b.per = sgemm::round_up(g.buf, 16) + b.tile + sgemm::round_up(dw.c * b.ecap, 16) + gemm;
  return b;
}

// The 1x1 convs' weights packed together (conv2d_dw_pw_cpu_pack): the projection's in conv2d_cpu_pack's layout,
// then, from this offset, the expand conv's.
int64_t expand_packed_offset(const DwPwShape& d) { return sgemm::round_up(conv2d_cpu_packed_floats(d.pw), 16); }

// packed: as conv2d_dw_pw_cpu_pack lays it out.
void conv_dw_pw_band(const DwPwShape& d, const float* x, const float* b_ex, const float* wdw,
                     const float* bdw, const float* bpw, const float* res, float* y, const Epilogue& epw,
                     void* ws, const float* packed) {
  const Conv2dShape &dw = d.dw, &pw = d.pw, &ex = d.ex;
  const BandGeom bg = band_geom(d);
  const Dw3Geom& g = bg.g;
  const int64_t oh = dw.out_h(), ow = dw.out_w(), ohw = oh * ow, st = dw.stride_h, c = dw.c;
  const int64_t hw = dw.h * dw.w;
  const sgemm::StoreFn store = sgemm::pick_store(d.dw_epi.act);
  const sgemm::AView pw_a{packed, 0, 0, true};
  const sgemm::AView ex_a{packed + expand_packed_offset(d), 0, 0, true};
  float* base = sgemm::align64(ws);
  const int64_t total = dw.n * oh;  // output rows of the whole batch, split evenly between threads
  const int threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), total));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* rb = base + t * bg.per;  // padded row oy0 * st + i of the band at rb + i * g.row
    float* tile = rb + sgemm::round_up(g.buf, 16);
    float* ebuf = tile + bg.tile;  // expanded input row iy of channel ci at ebuf + ci * ecap + (iy - e0) * w
    float* gemm_scratch = ebuf + sgemm::round_up(c * bg.ecap, 16);
    std::memset(rb, 0, g.buf * sizeof(float));
    int64_t e0 = 0, e1 = 0;  // the expanded rows in ebuf (of image eb)
    int64_t eb = -1;
    const int64_t r0 = total * t / threads, r1 = total * (t + 1) / threads;
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / oh, oy0 = r % oh;
      // The rows left in this image, in equal bands of at most bg.rows (14 rows as 12 + 2 left the
      // GEMM a 2-row band).
      const int64_t left = std::min(r1, (b + 1) * oh) - r, nb = (left + bg.rows - 1) / bg.rows;
      const int64_t oy1 = oy0 + (left + nb - 1) / nb;
      const int64_t bp = (oy1 - oy0) * ow;
      // Padded rows outside the image: zero rows (a buffer row may hold an earlier band's data).
      const int64_t pr0 = oy0 * st, need = (oy1 - oy0 - 1) * st + 3;
      const int64_t iy0 = std::max<int64_t>(0, pr0 - dw.pad_t);
      const int64_t iy1 = std::min<int64_t>(dw.h, pr0 + need - dw.pad_t);
      for (int64_t i = 0; i < need; ++i) {
        const int64_t iy = pr0 + i - dw.pad_t;
        if (iy < iy0 || iy >= iy1) std::memset(rb + i * g.row, 0, g.row * sizeof(float));
      }
      const float* src_img = x + b * c * hw;
      int64_t src_cs = hw, src_row0 = 0;  // the depthwise input: channel stride, and the row at its start
      if (d.expand) {
        // Rows [iy0, iy1) of the expand conv's output: the ones the previous band left move to the front,
        // the rest come from the GEMM over the same rows of the block input.
        const bool reuse = eb == b && e0 <= iy0 && iy0 < e1;
        const int64_t from = reuse ? std::min(iy1, e1) : iy0;  // rows [iy0, from) are in ebuf already
        if (reuse && e0 != iy0)
          for (int64_t ci = 0; ci < c; ++ci)
            std::memmove(ebuf + ci * bg.ecap, ebuf + ci * bg.ecap + (iy0 - e0) * dw.w,
                         (from - iy0) * dw.w * sizeof(float));
        if (from < iy1) {
          const int64_t n = (iy1 - from) * dw.w;
          const PointwisePackB pb{x + b * ex.c * hw + from * dw.w, ex.c, hw, 0};
          const sgemm::CView cv{ebuf + (from - iy0) * dw.w, bg.ecap, n, n, 0, b_ex, true, nullptr, 1.f, d.ex_epi};
          sgemm::run_tile_range(ex.k, ex.c, ex_a, pb, cv, 0, ex.k, 0, n, gemm_scratch);
        }
        e0 = iy0, e1 = iy1, eb = b;
        src_img = ebuf, src_cs = bg.ecap, src_row0 = iy0;
      }
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* src = src_img + ci * src_cs - src_row0 * dw.w;
        for (int64_t iy = iy0; iy < iy1; ++iy)
          dw3_fill(dw, g, ow, src + iy * dw.w, rb + (iy + dw.pad_t - pr0) * g.row);
        float* out = tile + ci * bp;
        dw3_buffered_rows(g, dw3_taps(g, st, wdw + ci * 9), ow, st, rb, oy0, oy1, out);
        store(out, 1, static_cast<int>(bp), out, 0, nullptr, bdw ? bdw + ci : nullptr, nullptr, 1.f, d.dw_epi);
      }
      const int64_t o = b * pw.k * ohw + oy0 * ow;
      const PointwisePackB pb{tile, c, bp, 0};
      const sgemm::CView cv{y + o, ohw, bp, bp, 0, bpw, true, res ? res + o : nullptr, 1.f, epw};
      sgemm::run_tile_range(pw.k, c, pw_a, pb, cv, 0, pw.k, 0, bp, gemm_scratch);
      r += oy1 - oy0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Winograd F(4x4, 3x3) for 3x3 stride-1 convs with many channels: 36 multiplies per 4x4 output
// tile and channel pair instead of 144. Y = A^T [ (G g G^T) . (B^T d B) ] A per 6x6 input tile d,
// with the matrices of Lavin & Gray (2016); the 36 element-wise products summed over input
// channels are 36 GEMMs [k x c] x [c x tiles] run by sgemm.h. Tiles of the whole batch are
// processed in chunks of `tc` so the transformed inputs and products stay in L2/L3. The transforms
// are exact in real arithmetic; in FP32 the error grows by a small constant factor over direct
// convolution (entries of B and A up to 8), well inside the FP32 test tolerance.
// ---------------------------------------------------------------------------------------------
struct WinoGeom {
  int64_t th, tw, tiles;  // tiles per image row/column, tiles in the batch
  int64_t tc;             // tiles per chunk (multiple of NR)
  // Distance between the 36 matrices of V and M. Offset by one cache line from a multiple of the
  // page size: the transforms touch all 36 at once, and 36 streams a multiple of 4 KiB apart would
  // all map to the same L1 set. U's (packed filters) are read one at a time.
  int64_t ustride, vstride, mstride;
  int64_t v, m;     // floats of the transformed inputs (one chunk), products
  int64_t gemm;     // floats of sgemm scratch per thread
};

WinoGeom wino_geom(const Conv2dShape& s) {
  WinoGeom g;
  g.th = (s.out_h() + 3) / 4;
  g.tw = (s.out_w() + 3) / 4;
  g.tiles = s.n * g.th * g.tw;
  // About 512K floats (2 MiB) of V + M per chunk, but at least 64 tiles so each chunk's GEMMs
  // reuse U over several panels.
  const int64_t fit = std::max<int64_t>(64, (int64_t(1) << 19) / (36 * (s.c + s.k)));
  g.tc = std::min<int64_t>(fit / NR * NR, sgemm::round_up(g.tiles, NR));
  g.tc = std::min<int64_t>(g.tc, 32 * NR);
  g.ustride = sgemm::round_up(sgemm::packed_a_floats(s.k, s.c), 16);
  g.vstride = sgemm::round_up(s.c * g.tc, 1024) + 16;
  g.mstride = sgemm::round_up(s.k * g.tc, 1024) + 16;
  g.v = 36 * g.vstride;
  g.m = 36 * g.mstride;
  g.gemm = sgemm::round_up(static_cast<int64_t>(sgemm::workspace_bytes(s.k, s.c, 1) / sizeof(float)), 16);
  return g;
}

bool use_winograd(const Conv2dShape& s) {
  if (s.groups != 1 || s.r != 3 || s.s != 3 || s.stride_h != 1 || s.stride_w != 1 ||
      s.dil_h != 1 || s.dil_w != 1)
    return false;
  // Enough channels for the GEMMs to outweigh the tile transforms, and enough tiles to fill the GEMMs'
  // columns. With the filters transformed once at build (they used to be transformed every call, which
  // had kept 28x28 direct), 64+ channels pay from 16 tiles: in-model A/B, epyc2, ResNet-18's 3x3 convs at
  // 28x28 (49 tiles, 128 channels) and 14x14 (16 tiles, 256) 0.56-0.61x the direct time, the whole model
  // 0.77 (1 thread) / 0.82 (2 threads). Not below: at 7x7 (4 tiles) 1.5-1.7x slower, the seed CNN's
  // 32 -> 64 at 13x13 (16 tiles) 1.3x.
  const int64_t tiles_h = (s.out_h() + 3) / 4, tiles_w = (s.out_w() + 3) / 4, tiles = s.n * tiles_h * tiles_w;
  // Tiles cover whole 4x4 blocks: under 3/4 of their outputs real, the direct GEMM wins. The seed CNN's
  // 32 -> 64 at 13x13 (169 of 256) at batch 8 (128 tiles): paired A/B, direct 0.78x the Winograd time at 1
  // thread, 0.89x at 2; batch 4 0.91x. At 7x7 and 14x14 (49/64, 196/256) Winograd still wins with 64+ channels.
  if (4 * s.out_h() * s.out_w() < 3 * 16 * tiles_h * tiles_w) return false;
  return s.c >= 16 && s.k >= 16 && (tiles >= 64 || (tiles >= 16 && s.c >= 64 && s.k >= 64));
}

// G g G^T of one 3x3 filter.
inline void wino_filter(const float* g, float* u) {
  const float s6 = 1.f / 6.f, s12 = 1.f / 12.f, s24 = 1.f / 24.f;
  float t[6][3];  // G g
  for (int j = 0; j < 3; ++j) {
    const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
    t[0][j] = 0.25f * g0;
    t[1][j] = -(g0 + g1 + g2) * s6;
    t[2][j] = -(g0 - g1 + g2) * s6;
    t[3][j] = g0 * s24 + g1 * s12 + g2 * s6;
    t[4][j] = g0 * s24 - g1 * s12 + g2 * s6;
    t[5][j] = g2;
  }
  for (int i = 0; i < 6; ++i) {  // (G g) G^T
    const float g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
    float* ui = u + i * 6;
    ui[0] = 0.25f * g0;
    ui[1] = -(g0 + g1 + g2) * s6;
    ui[2] = -(g0 - g1 + g2) * s6;
    ui[3] = g0 * s24 + g1 * s12 + g2 * s6;
    ui[4] = g0 * s24 - g1 * s12 + g2 * s6;
    ui[5] = g2;
  }
}

// U[xi] = (G g G^T)[xi], a [k][c] matrix per xi, packed as the GEMM's A (sgemm::pack_a's layout),
// ustride floats apart.
void wino_weights(const Conv2dShape& s, const WinoGeom& gm, const float* w, float* u) {
  const int64_t pad = sgemm::packed_a_floats(s.k, s.c);
  for (int xi = 0; xi < 36; ++xi) std::fill(u + xi * gm.ustride, u + xi * gm.ustride + pad, 0.f);
#pragma omp parallel for schedule(static) if (s.k * s.c > 4096)
  for (int64_t k = 0; k < s.k; ++k)
    for (int64_t c = 0; c < s.c; ++c) {
      float uf[36];
      wino_filter(w + (k * s.c + c) * 9, uf);
      const int64_t at = sgemm::packed_index(s.k, s.c, k, c);
      for (int xi = 0; xi < 36; ++xi) u[xi * gm.ustride + at] = uf[xi];
    }
}

// B^T applied along one axis of a 6x6 block of vectors (one tile per lane): 6 values in, 6 out.
template <class V>
inline void wino_bt(const V* d, int ds, V* o, int os) {
  const V d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
  o[0] = 4.f * d0 - 5.f * d2 + d4;
  o[os] = -4.f * (d1 + d2) + d3 + d4;
  o[2 * os] = 4.f * (d1 - d2) - d3 + d4;
  o[3 * os] = 2.f * (d3 - d1) - d2 + d4;
  o[4 * os] = 2.f * (d1 - d3) - d2 + d4;
  o[5 * os] = 4.f * d1 - 5.f * d3 + d5;
}

// A^T along one axis: 6 values in, 4 out.
template <class V>
inline void wino_at(const V* a, int as, V* o, int os) {
  const V a0 = a[0], a1 = a[as], a2 = a[2 * as], a3 = a[3 * as], a4 = a[4 * as], a5 = a[5 * as];
  o[0] = a0 + a1 + a2 + a3 + a4;
  o[os] = a1 - a2 + 2.f * (a3 - a4);
  o[2 * os] = a1 + a2 + 4.f * (a3 + a4);
  o[3 * os] = a1 - a2 + 8.f * (a3 - a4) + a5;
}

// Tile t of the batch -> image and top-left output coordinate; next() steps to tile t + 1 without
// the two 64-bit divisions.
struct TileAt {
  int64_t img, oy, ox;
  void next(const WinoGeom& g) {
    ox += 4;
    if (ox < g.tw * 4) return;
    ox = 0;
    oy += 4;
    if (oy < g.th * 4) return;
    oy = 0;
    ++img;
  }
};
inline TileAt tile_at(const WinoGeom& g, int64_t t) {
  const int64_t per = g.th * g.tw, r = t % per;
  return {t / per, (r / g.tw) * 4, (r % g.tw) * 4};
}

#if EV_SGEMM_AVX512
// The transforms on AVX-512: 16 tiles at once (one NR panel of V, one tile per lane), read from and written to NCHW
// rows with vector loads, lane permutes and masked stores instead of a scalar copy per tile and pixel. perf on
// ESPCN's 64 -> 64 convs at 240x320 (2 threads): the scalar gather of wino_inputs took 29% of the conv, the output
// transform's scalar transpose and row stores 25%, the GEMMs a third. A group's tiles are split into runs lying in
// one tile row of one image (several on narrow maps); lanes of no run (past nt) are zeros.
using v16 = sgemm::v16f;

// Lanes i of a 16-lane vector with lo <= i < hi.
inline __mmask16 lane_range(int64_t lo, int64_t hi) {
  lo = std::max<int64_t>(lo, 0), hi = std::min<int64_t>(hi, 16);
  return lo >= hi ? 0 : static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
}

// Calls f(l0, l1, tile of lane l0) for each run of the lanes [0, lanes) of a group starting at tile t.
template <class F>
inline void for_tile_runs(const WinoGeom& g, int64_t t, int lanes, F f) {
  TileAt ta = tile_at(g, t);
  for (int l0 = 0; l0 < lanes;) {
    const int l1 = l0 + static_cast<int>(std::min<int64_t>(lanes - l0, g.tw - ta.ox / 4));
    f(l0, l1, ta);
    for (int l = l0; l < l1; ++l) ta.next(g);
    l0 = l1;
  }
}

// One input row of a run as the six tile columns j: e[j] lane l = row[xb + 4 l + j], from the row's pixels
// [xb + plo, xb + phi) (zeros elsewhere): four two-source permutes give columns 0-3 of tiles 0-7 and 8-15 in
// pairs, two block shuffles part the pairs, and columns 4 and 5 are columns 0 and 1 one tile on.
inline void wino_row16(const float* row, int64_t xb, int64_t plo, int64_t phi, v16* e) {
  v16 r[5];
  for (int q = 0; q < 5; ++q) r[q] = _mm512_maskz_loadu_ps(lane_range(plo - 16 * q, phi - 16 * q), row + xb + 16 * q);
  const __m512i c01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i c23 = _mm512_add_epi32(c01, _mm512_set1_epi32(2));
  const v16 a01 = _mm512_permutex2var_ps(r[0], c01, r[1]), b01 = _mm512_permutex2var_ps(r[2], c01, r[3]);
  const v16 a23 = _mm512_permutex2var_ps(r[0], c23, r[1]), b23 = _mm512_permutex2var_ps(r[2], c23, r[3]);
  e[0] = _mm512_shuffle_f32x4(a01, b01, 0x44);
  e[1] = _mm512_shuffle_f32x4(a01, b01, 0xEE);
  e[2] = _mm512_shuffle_f32x4(a23, b23, 0x44);
  e[3] = _mm512_shuffle_f32x4(a23, b23, 0xEE);
  const __m512i r4 = _mm512_castps_si512(r[4]);
  e[4] = _mm512_castsi512_ps(_mm512_alignr_epi32(r4, _mm512_castps_si512(e[0]), 1));
  e[5] = _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_alignr_epi32(r4, r4, 1), _mm512_castps_si512(e[1]), 1));
}

// V[xi] for tiles [t0, t0 + nt) as NR-wide panels, V + xi * vstride + (tl / NR) * c * NR + ci * NR + tl % NR (the
// GEMM's B packing reads them in place), 16 tiles per group.
void wino_inputs16(const Conv2dShape& s, const WinoGeom& g, const float* x, int64_t t0, int64_t nt, float* v,
                   bool team) {
  const int64_t groups = (nt + 15) / 16;
  auto body = [&](int64_t ci, int64_t q) {
    const int64_t tl0 = q * 16;
    v16 d[36] = {};
    for_tile_runs(g, t0 + tl0, static_cast<int>(std::min<int64_t>(16, nt - tl0)), [&](int l0, int l1, TileAt ta) {
      const float* src = x + (ta.img * s.c + ci) * s.h * s.w;
      const int64_t xb = ta.ox - s.pad_l - 4 * l0;  // lane l, column j reads pixel xb + 4 l + j
      const int64_t plo = std::max<int64_t>(4 * l0, -xb), phi = std::min<int64_t>(4 * l1 + 2, s.w - xb);
      const __mmask16 lanes = lane_range(l0, l1);
      const bool whole = lanes == 0xFFFF;
      for (int i = 0; i < 6; ++i) {
        const int64_t iy = ta.oy - s.pad_t + i;
        v16 e[6] = {};
        if (iy >= 0 && iy < s.h) wino_row16(src + iy * s.w, xb, plo, phi, e);
        for (int j = 0; j < 6; ++j) d[i * 6 + j] = whole ? e[j] : _mm512_mask_mov_ps(d[i * 6 + j], lanes, e[j]);
      }
    });
    v16 t[36], r[36];
    for (int j = 0; j < 6; ++j) wino_bt(d + j, 6, t + j, 6);          // B^T d
    for (int i = 0; i < 6; ++i) wino_bt(t + i * 6, 1, r + i * 6, 1);  // (B^T d) B
    float* o = v + (tl0 / NR) * s.c * NR + ci * NR;
    for (int xi = 0; xi < 36; ++xi) *reinterpret_cast<v16*>(o + xi * g.vstride) = r[xi];
  };
  if (team) {
#pragma omp for schedule(static) collapse(2)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t q = 0; q < groups; ++q) body(ci, q);
  } else {
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t q = 0; q < groups; ++q) body(ci, q);
  }
}

// Y = A^T m A for 16 tiles of output channel k: o[i * 4 + j] lane l is row i, column j of tile l; each row goes to
// pixel order (p[u] lane w = pixel 16 u + w = column w % 4 of tile 4 u + w / 4) by two rounds of permutes, then
// through bias, residual and activation to masked stores, one run at a time.
template <Act ACT>
void wino_outputs16(const Conv2dShape& s, const WinoGeom& g, const float* m, int64_t t0, int64_t nt,
                    const float* bias, const float* res, float* y, const Epilogue& e, bool team) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t groups = (nt + 15) / 16;
  const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i pair_hi = _mm512_add_epi32(pair_lo, _mm512_set1_epi32(8));
  const __m512i quad_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const __m512i quad_hi = _mm512_add_epi32(quad_lo, _mm512_set1_epi32(8));
  auto body = [&](int64_t k, int64_t q) {
    const int64_t tl0 = q * 16;
    v16 a[36], t[24], o[16];
    // tl0 + 15 < tc: the lanes past nt read products of zero inputs.
    for (int xi = 0; xi < 36; ++xi) a[xi] = *reinterpret_cast<const v16*>(m + xi * g.mstride + k * g.tc + tl0);
    for (int j = 0; j < 6; ++j) wino_at(a + j, 6, t + j, 6);  // A^T a: 4 x 6
    for (int i = 0; i < 4; ++i) wino_at(t + i * 6, 1, o + i * 4, 1);
    v16 p[4][4];  // p[i][u]: output row i, pixels 16 u .. 16 u + 15 of the group
    for (int i = 0; i < 4; ++i) {
      const v16* c = o + i * 4;
      const v16 ab_lo = _mm512_permutex2var_ps(c[0], pair_lo, c[1]), ab_hi = _mm512_permutex2var_ps(c[0], pair_hi, c[1]);
      const v16 cd_lo = _mm512_permutex2var_ps(c[2], pair_lo, c[3]), cd_hi = _mm512_permutex2var_ps(c[2], pair_hi, c[3]);
      p[i][0] = _mm512_permutex2var_ps(ab_lo, quad_lo, cd_lo);
      p[i][1] = _mm512_permutex2var_ps(ab_lo, quad_hi, cd_lo);
      p[i][2] = _mm512_permutex2var_ps(ab_hi, quad_lo, cd_hi);
      p[i][3] = _mm512_permutex2var_ps(ab_hi, quad_hi, cd_hi);
    }
    const float b = bias ? bias[k] : 0.f;
    for_tile_runs(g, t0 + tl0, static_cast<int>(std::min<int64_t>(16, nt - tl0)), [&](int l0, int l1, TileAt ta) {
      const int64_t xb = ta.ox - 4 * l0;  // pixel w of the group lies at column xb + w
      const int64_t plo = 4 * l0, phi = std::min<int64_t>(4 * l1, ow - xb);
      for (int i = 0; i < 4 && ta.oy + i < oh; ++i) {
        const int64_t at = ((ta.img * s.k + k) * oh + ta.oy + i) * ow + xb;
        for (int u = 0; u < 4; ++u) {
          const __mmask16 mk = lane_range(plo - 16 * u, phi - 16 * u);
          if (mk) cpu::store_epilogue16<ACT>(y + at + 16 * u, res ? res + at + 16 * u : nullptr, p[i][u] + b, mk, e);
        }
      }
    });
  };
  if (team) {
#pragma omp for schedule(static) collapse(2)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t q = 0; q < groups; ++q) body(k, q);
  } else {
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t q = 0; q < groups; ++q) body(k, q);
  }
}

using WinoOutputsFn = void (*)(const Conv2dShape&, const WinoGeom&, const float*, int64_t, int64_t, const float*,
                               const float*, float*, const Epilogue&, bool);
#else
// V[xi] for tiles [t0, t0 + nt) as NR-wide panels: V + xi * vstride + (tl / NR) * c * NR + ci * NR
// + tl % NR, so the GEMM's B packing is a straight copy. Tiles past nt are zero. Eight tiles are
// transformed at once, one per vector lane.
void wino_inputs(const Conv2dShape& s, const WinoGeom& g, const float* x, int64_t t0, int64_t nt,
                 float* v, bool team) {
  const int64_t groups8 = g.tc / 8;
  auto body = [&](int64_t ci, int64_t q) {
      const int64_t tl0 = q * 8;
      alignas(32) float d[36][8];
      TileAt ta = tile_at(g, t0 + tl0);
      for (int lane = 0; lane < 8; ++lane, ta.next(g)) {
        const int64_t tl = tl0 + lane;
        if (tl >= nt) {
          for (int xi = 0; xi < 36; ++xi) d[xi][lane] = 0.f;
          continue;
        }
        const float* src = x + (ta.img * s.c + ci) * s.h * s.w;
        const int64_t iy0 = ta.oy - s.pad_t, ix0 = ta.ox - s.pad_l;
        if (iy0 >= 0 && ix0 >= 0 && iy0 + 6 <= s.h && ix0 + 6 <= s.w) {
          for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) d[i * 6 + j][lane] = src[(iy0 + i) * s.w + ix0 + j];
        } else {
          for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) {
              const int64_t iy = iy0 + i, ix = ix0 + j;
              d[i * 6 + j][lane] =
                  iy >= 0 && iy < s.h && ix >= 0 && ix < s.w ? src[iy * s.w + ix] : 0.f;
            }
        }
      }
      const v8f* dv = reinterpret_cast<const v8f*>(d);
      v8f t[36], r[36];
      for (int j = 0; j < 6; ++j) wino_bt(dv + j, 6, t + j, 6);          // B^T d
      for (int i = 0; i < 6; ++i) wino_bt(t + i * 6, 1, r + i * 6, 1);  // (B^T d) B
      float* o = v + (tl0 / NR) * s.c * NR + ci * NR + tl0 % NR;
      for (int xi = 0; xi < 36; ++xi) *reinterpret_cast<v8fu*>(o + xi * g.vstride) = r[xi];
  };
  if (team) {
#pragma omp for schedule(static) collapse(2)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t q = 0; q < groups8; ++q) body(ci, q);
  } else {
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t q = 0; q < groups8; ++q) body(ci, q);
  }
}

// Y tile = A^T m A for every (k, tile) of the chunk, eight tiles at once. Lanes are consecutive
// tiles, so a run of lanes in one tile row gives 4 output rows of up to 32 contiguous pixels, which
// go through the same fused-epilogue store as the GEMM's.
void wino_outputs(const Conv2dShape& s, const WinoGeom& g, const float* m, int64_t t0, int64_t nt,
                  const float* bias, const float* res, float* y, const Epilogue& e, bool team) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t groups8 = (nt + 7) / 8;
  const sgemm::StoreFn store = sgemm::pick_store(e.act);
  auto body = [&](int64_t k, int64_t q) {
      const int64_t tl0 = q * 8;
      v8f a[36], t[24], o[16];
      // tl0 + 7 < tc: the lanes past nt read products of zero inputs.
      for (int xi = 0; xi < 36; ++xi)
        a[xi] = *reinterpret_cast<const v8fu*>(m + xi * g.mstride + k * g.tc + tl0);
      for (int j = 0; j < 6; ++j) wino_at(a + j, 6, t + j, 6);  // A^T a: 4 x 6
      for (int i = 0; i < 4; ++i) wino_at(t + i * 6, 1, o + i * 4, 1);
      alignas(32) float rows[4][32];  // rows[i][lane * 4 + j]: output row i of the 8 tiles
      for (int i = 0; i < 4; ++i)
        for (int lane = 0; lane < 8; ++lane)
          for (int j = 0; j < 4; ++j) rows[i][lane * 4 + j] = o[i * 4 + j][lane];
      const int lanes = static_cast<int>(std::min<int64_t>(8, nt - tl0));
      TileAt ta = tile_at(g, t0 + tl0);
      for (int l0 = 0; l0 < lanes;) {
        // Lanes l0 .. l1-1 lie in one tile row of one image.
        const int run = static_cast<int>(std::min<int64_t>(lanes - l0, g.tw - ta.ox / 4));
        const int len = static_cast<int>(std::min<int64_t>(4 * run, ow - ta.ox));
        const int64_t base = ((ta.img * s.k + k) * oh + ta.oy) * ow + ta.ox;
        for (int i = 0; i < 4 && ta.oy + i < oh; ++i) {
          const int64_t o_i = base + i * ow;
          store(rows[i] + l0 * 4, 1, len, y + o_i, 0, res ? res + o_i : nullptr,
                bias ? bias + k : nullptr, nullptr, 1.f, e);
        }
        l0 += run;
        for (int r = 0; r < run; ++r) ta.next(g);
      }
  };
  if (team) {
#pragma omp for schedule(static) collapse(2)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t q = 0; q < groups8; ++q) body(k, q);
  } else {
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t q = 0; q < groups8; ++q) body(k, q);
  }
}

#endif

// B over V: the panels are already laid out, c * NR floats apart. With one depth block (kl == c) that is the
// block's own layout and it is read in place; deeper K copies each panel's kl rows.
struct WinoPackB {
  const float* v;  // V[xi]
  int64_t c;
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    if (kl == c) return v + (j0 / NR) * c * NR;
    for (int64_t q = 0; q * NR < nl; ++q)
      std::memcpy(dst + q * kl * NR, v + ((j0 / NR + q) * c + k0) * NR, kl * NR * sizeof(float));
    return dst;
  }
};

// With many chunks (large batches) each thread runs whole chunks on its own V and M: no barrier
// per chunk. Otherwise the threads share each chunk's transforms and its 36 GEMMs.
bool wino_chunk_parallel(const WinoGeom& g, int threads) {
  return threads > 1 && (g.tiles + g.tc - 1) / g.tc >= 2 * threads;
}

size_t winograd_bytes(const Conv2dShape& s, int threads) {
  const WinoGeom g = wino_geom(s);
  const int64_t vm = (wino_chunk_parallel(g, threads) ? threads : 1) * (g.v + g.m);
  return static_cast<size_t>(vm + threads * g.gemm) * sizeof(float) + 64;
}

// Transforms, GEMMs and output transform of tiles [t0, t0 + nt); `team`: shared by all threads.
void wino_chunk(const Conv2dShape& s, const WinoGeom& g, const float* x, const float* u, float* v,
                float* m, int64_t t0, int64_t nt, const float* bias, const float* res, float* y,
                const Epilogue& e, float* gws, bool team) {
  const Epilogue plain;
#if EV_SGEMM_AVX512
  wino_inputs16(s, g, x, t0, nt, v, team);  // in a team, ends with the omp for's barrier
#else
  wino_inputs(s, g, x, t0, nt, v, team);
#endif
  auto product = [&](int xi) {
    const sgemm::AView av{u + xi * g.ustride, 0, 0, true};
    const WinoPackB pb{v + xi * g.vstride, s.c};
    const sgemm::CView cv{m + xi * g.mstride, g.tc, g.tc, g.tc, 0, nullptr, true, nullptr, 1.f,
                          plain};
    sgemm::gemm(s.k, nt, s.c, av, pb, cv, gws, 1);
  };
  if (team) {
#pragma omp for schedule(static)
    for (int xi = 0; xi < 36; ++xi) product(xi);
  } else {
    for (int xi = 0; xi < 36; ++xi) product(xi);
  }
#if EV_SGEMM_AVX512
  const WinoOutputsFn outputs =
      sgemm::with_act(e.act, [](auto act) -> WinoOutputsFn { return wino_outputs16<decltype(act)::value>; });
  outputs(s, g, m, t0, nt, bias, res, y, e, team);
#else
  wino_outputs(s, g, m, t0, nt, bias, res, y, e, team);
#endif
}

// u: the filters as wino_weights left them.
void conv_winograd(const Conv2dShape& s, const float* x, const float* u, const float* bias,
                   const float* res, float* y, const Epilogue& e, void* ws) {
  const int threads = omp_get_max_threads();
  const WinoGeom g = wino_geom(s);
  const bool per_chunk = wino_chunk_parallel(g, threads);
  float* vm = sgemm::align64(ws);
  float* scratch = vm + (per_chunk ? threads : 1) * (g.v + g.m);
  const int64_t chunks = (g.tiles + g.tc - 1) / g.tc;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num();
    float* gws = scratch + t * g.gemm;
    if (per_chunk) {
      float* v = vm + t * (g.v + g.m);
#pragma omp for schedule(dynamic)
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t t0 = ch * g.tc;
        wino_chunk(s, g, x, u, v, v + g.v, t0, std::min(g.tc, g.tiles - t0), bias, res, y, e,
                   gws, false);
      }
    } else {
      for (int64_t t0 = 0; t0 < g.tiles; t0 += g.tc)
        wino_chunk(s, g, x, u, vm, vm + g.v, t0, std::min(g.tc, g.tiles - t0), bias, res, y, e,
                   gws, true);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Direct convs (AVX-512; groups 1, input channels of 16, output channels of 32, not 1x1, not Winograd), without
// packing the input. The padded copy is channel-blocked (16 channels of a pixel in one cache line, written by 16 x
// 16 in-register transposes); a tile is up to 14 consecutive output pixels of a row x 32 output channels, or up to
// 7 x 64: for each channel of a block at each tap it loads the weights as 2 or 4 vectors and broadcasts the tile's
// inputs: 28 accumulators, 28 multiply-adds per 16 or 11 loads. Tiles go to NCHW through 16 x 16 transposes with
// the epilogue on whole vectors (direct_store). Two cases:
// - tiles of up to 14 x 32, the whole K at once, no partial sums (the pool-fused conv's bands run these too,
//   direct_rows). The GEMM path packs the input patches per depth block of 256 and keeps partial sums between
//   blocks (perf on ResNet-18's 128 -> 256 stride-2 conv at 28x28: a fifth of its time outside the multiply-adds).
//   Paired C++ A/B against the GEMM path, Xeon, 2 threads: that conv 0.88-0.90x (before the vector transposes,
//   which took another 0.87-0.89x), ResNet-18's 64 -> 128 stride 2 at 56x56 (K = 576) 0.92-0.94x, 16 -> 32 and
//   32 -> 64 stride 2 0.69-0.84x, 5x5 stride 1 at 14-28 wide 0.73-0.82x, 3x3 at 8-13 wide (too few tiles for
//   Winograd) 0.71-0.80x, 96 channels at 7x7 0.57x.
// - maps at most 7 wide with output channels of 64 (ResNet-18's 512 -> 512 3x3 convs at 7x7 and its 256 -> 512
//   stride-2 conv): whole rows x 64 channels. Each thread takes whole blocks of 64 output channels; per block it
//   runs one channel block of the input (9 taps x 16 channels: 36 KB of weights) over all rows, keeping the rows'
//   partial sums, so those weights are read from L3 once and from L1 for the other rows; the tile prefetches the
//   next channel block's weights into L2 a quarter per row (without it the first row waited on L3: perf put the
//   weight loads hottest, and the 64 x 7 tiles ran 1.05x the GEMM). Paired C++ A/B against the GEMM path, Xeon:
//   512 -> 512 at 7x7 0.89x at 2 threads (0.81x at 1: 143 GFLOP/s), 256 -> 512 stride 2 0.85x, both before the
//   vector transposes (0.90-0.97x again). (Whole rows of 7 x 32 channels in 14-column tiles, two rows per tile,
//   ran 0.91x the GEMM alone but slower in the model: full K per tile streams the weights from L3 for every row
//   pair; the 64-channel layout over wider maps, 7-pixel tiles, ran 1.03x the 14 x 32 tiles at 14 wide and
//   1.16x the GEMM at 28.) Batch 8 at 7x7 stride 1 is Winograd's (32 tiles).
// ---------------------------------------------------------------------------------------------
#if EV_SGEMM_AVX512
constexpr int DC_CB = 16, DC_PX = 14;

int64_t direct_k(const Conv2dShape& s) { return s.c * s.r * s.s; }

// Output channels per tile: 64 on maps at most 7 wide (tiles of a whole row), else 32 (tiles of up to 14 pixels):
// 28 accumulators either way. The 64-channel rows need two blocks of 64: with one, a single thread ran the whole
// conv (the seed CNN's 64 -> 64 at 6x6: 32-channel tiles 0.77x the time at 2 threads).
int direct_oc(const Conv2dShape& s) { return s.out_w() <= 7 && s.k % 64 == 0 && s.k >= 128 ? 64 : 32; }

bool use_direct(const Conv2dShape& s) {
  return s.groups == 1 && s.c % DC_CB == 0 && s.k % 32 == 0 && kernel_fits(s) && !is_pointwise(s) &&
         !is_strided_pointwise(s) && !use_winograd(s);
}

// The padded input, channel-blocked: [c / 16][stride phase (py, px)][hq][wq][16]: a pixel's 16 channels are one
// cache line, so the 16 K indices of a channel block at one tap broadcast from the same 14 lines.
struct DirectGeom {
  int64_t hq, wq, phase, block, floats;  // phase: floats of one phase plane (x 16); block: of one channel block
};

DirectGeom direct_geom(const Conv2dShape& s) {
  const PadGeom pg = pad_geom(s);  // the same stride phases, 16 floats per pixel
  DirectGeom g;
  g.hq = pg.hq, g.wq = pg.wq;
  g.phase = g.hq * g.wq * DC_CB;
  g.block = s.stride_h * s.stride_w * g.phase;
  g.floats = sgemm::round_up(s.c / DC_CB * g.block, 16);
  return g;
}

// K index p = ((cb * r + ky) * s + kx) * 16 + i (channel cb * 16 + i at tap (ky, kx)); weights [k][c][r][s] ->
// [k / oc][K][oc] in that order (oc = direct_oc).
void direct_pack(const Conv2dShape& s, const float* w, float* packed) {
  const int64_t K = direct_k(s), rs = s.r * s.s, oc = direct_oc(s);
  for (int64_t o = 0; o < s.k; ++o)
    for (int64_t ci = 0; ci < s.c; ++ci)
      for (int64_t t = 0; t < rs; ++t) {
        const int64_t p = ((ci / DC_CB) * rs + t) * DC_CB + ci % DC_CB;
        packed[((o / oc) * K + p) * oc + o % oc] = w[(o * s.c + ci) * rs + t];
      }
}

// One tile of W pixels of an output row (pixel j at in + 16 j) x 16 V output channels:
// tmp[j * 16 V + o] = sum over taps t and channels i of in[tap[t] + 16 j + i] * weights, plus tmp's own values when
// `add` (a partial sum). With PF, one line from pf on is prefetched into L2 per K index (an unneeded prefetch cost
// the 14 x 32 tiles 5%).
template <int W, int V, bool PF>
void direct_tile(int64_t taps, const int64_t* __restrict tap, const float* __restrict in,
                 const float* __restrict wb, float* __restrict tmp, bool add, const float* pf) {
  constexpr int OC = 16 * V;
  sgemm::v16f acc[W][V];
#pragma GCC unroll 14
  for (int j = 0; j < W; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      acc[j][v] = add ? *reinterpret_cast<const sgemm::v16f*>(tmp + j * OC + 16 * v) : sgemm::v16f{};
  for (int64_t t = 0; t < taps; ++t) {
    const float* xi = in + tap[t];
    const float* wt = wb + t * DC_CB * OC;
#pragma GCC unroll 4
    for (int i = 0; i < DC_CB; ++i) {
      if (PF) __builtin_prefetch(pf + (t * DC_CB + i) * 16, 0, 2);
      sgemm::v16f w[V];
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) w[v] = *reinterpret_cast<const sgemm::v16fu*>(wt + i * OC + 16 * v);
#pragma GCC unroll 14
      for (int j = 0; j < W; ++j) {
        const float x = xi[j * DC_CB + i];
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) acc[j][v] += w[v] * x;
      }
    }
  }
#pragma GCC unroll 14
  for (int j = 0; j < W; ++j)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) *reinterpret_cast<sgemm::v16f*>(tmp + j * OC + 16 * v) = acc[j][v];
}

using DirectTileFn = void (*)(int64_t, const int64_t*, const float*, const float*, float*, bool, const float*);
template <int V, bool PF, size_t... I>
constexpr std::array<DirectTileFn, sizeof...(I)> direct_tiles(std::index_sequence<I...>) {
  return {&direct_tile<static_cast<int>(I) + 1, V, PF>...};
}
// By width - 1: 32 output channels x 1..14 pixels, 64 x 1..7.
constexpr auto kDirectTiles32 = direct_tiles<2, false>(std::make_index_sequence<DC_PX>{});
constexpr auto kDirectTiles64 = direct_tiles<4, true>(std::make_index_sequence<7>{});

// A tile of `width` (<= 16) pixels x oc channels, pixel-major in tmp (tmp[j * oc + o]), to NCHW y (channel planes
// ld floats apart; res the same): 16 x 16 blocks transposed in registers, then bias, residual and activation, masked
// to the tile's width. (Transposing through a scalar copy and the GEMM's row store took 15% of ResNet-18's 128 ->
// 256 stride-2 conv, perf.)
template <Act ACT>
void direct_store(const float* tmp, int oc, int width, float* y, int64_t ld, const float* res, const float* bias,
                  const Epilogue& e) {
  const __mmask16 m = lane_range(0, width);
  for (int c0 = 0; c0 < oc; c0 += 16) {
    sgemm::v16f r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j)
      r[j] = j < width ? *reinterpret_cast<const sgemm::v16f*>(tmp + j * oc + c0) : sgemm::v16f{};
    cpu::transpose16(r);
    for (int l = 0; l < 16; ++l) {
      const int64_t at = (c0 + l) * ld;
      cpu::store_epilogue16<ACT>(y + at, res ? res + at : nullptr, r[l] + (bias ? bias[c0 + l] : 0.f), m, e);
    }
  }
}

using DirectStoreFn = void (*)(const float*, int, int, float*, int64_t, const float*, const float*, const Epilogue&);

DirectStoreFn pick_direct_store(Act a) {
  return sgemm::with_act(a, [](auto act) -> DirectStoreFn { return direct_store<decltype(act)::value>; });
}

// Offset of tap t = (ci * r + ky) * s + kx into a padded copy split into stride phases: `chan` floats per channel
// (or channel block) ci, `phase` per phase plane, phase rows of wq pixels of `px` floats each. The direct convs' tap
// tables: pad_image's layout (px 1) and the channel-blocked copy (px 16).
int64_t phase_tap(const Conv2dShape& s, int64_t t, int64_t chan, int64_t phase, int64_t wq, int64_t px) {
  const int64_t ci = t / (s.r * s.s), dy = t / s.s % s.r * s.dil_h, dx = t % s.s * s.dil_w;
  return ci * chan + ((dy % s.stride_h) * s.stride_w + dx % s.stride_w) * phase +
         (dy / s.stride_h * wq + dx / s.stride_w) * px;
}

// Offsets into the blocked copy of each tap (cb, ky, kx): channel block, stride phase, phase row and column.
void direct_taps(const Conv2dShape& s, const DirectGeom& g, int64_t* tap) {
  for (int64_t t = 0; t < s.c / DC_CB * s.r * s.s; ++t) tap[t] = phase_tap(s, t, g.block, g.phase, g.wq, DC_CB);
}

// Output rows [r0, r1) of one image, all channels, from the blocked copy xb in tiles of up to 14 pixels x 32
// channels over the whole K (weights packed for direct_oc 32); row r0 at y, channel planes ld floats apart. On the
// calling thread: the pool-fused conv's bands.
void direct_rows(const Conv2dShape& s, const DirectGeom& g, const int64_t* tap, const float* xb, const float* pw,
                 const float* bias, float* y, int64_t ld, int64_t r0, int64_t r1, const Epilogue& e) {
  const int64_t taps = s.c / DC_CB * s.r * s.s, K = direct_k(s), ow = s.out_w();
  const DirectStoreFn store = pick_direct_store(e.act);
  alignas(64) float tmp[DC_PX * 32];
  for (int64_t oy = r0; oy < r1; ++oy)
    for (int64_t ox = 0; ox < ow; ox += DC_PX) {
      const int width = static_cast<int>(std::min<int64_t>(DC_PX, ow - ox));
      for (int64_t blk = 0; blk < s.k / 32; ++blk) {
        kDirectTiles32[width - 1](taps, tap, xb + (oy * g.wq + ox) * DC_CB, pw + blk * K * 32, tmp, false, nullptr);
        store(tmp, 32, width, y + blk * 32 * ld + (oy - r0) * ow + ox, ld, nullptr, bias ? bias + blk * 32 : nullptr,
              e);
      }
    }
}

size_t direct_bytes(const Conv2dShape& s) {
  const int threads = omp_get_max_threads();
  const int64_t part = direct_oc(s) == 64 ? threads * s.out_h() * 7 * 64 + 16 : 0;
  const int64_t copies = per_image_threads(s, threads) ? threads : 1;
  return static_cast<size_t>(copies * direct_geom(s).floats + 2 * direct_k(s) / DC_CB + part) * sizeof(float) + 64;
}

// Input rows [r0, r1) (row r: channel block r / h, image row r % h) into the blocked padded copy.
void direct_copy(const Conv2dShape& s, const DirectGeom& g, const float* x, float* xb, int64_t r0, int64_t r1) {
  const int64_t hw = s.h * s.w;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t cb = r / s.h, iy = r % s.h, row = iy + s.pad_t;
    float* brow = xb + cb * g.block + (row % s.stride_h) * s.stride_w * g.phase + row / s.stride_h * g.wq * DC_CB;
    const float* src = x + cb * DC_CB * hw + iy * s.w;
    // 16 pixels of the 16 channel rows at a time, transposed in registers (a scalar copy was 5% of ResNet-18's
    // 128 -> 256 stride-2 conv).
    for (int64_t ix0 = 0; ix0 < s.w; ix0 += 16) {
      const int n = static_cast<int>(std::min<int64_t>(16, s.w - ix0));
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      sgemm::v16f r[16];
#pragma GCC unroll 16
      for (int i = 0; i < DC_CB; ++i) r[i] = _mm512_maskz_loadu_ps(m, src + i * hw + ix0);
      cpu::transpose16(r);
      for (int j = 0; j < n; ++j) {
        const int64_t col = ix0 + j + s.pad_l;
        *reinterpret_cast<sgemm::v16f*>(brow + (col % s.stride_w) * g.phase + col / s.stride_w * DC_CB) = r[j];
      }
    }
  }
}

// Runs work(b, xb, t, u, nu) for every image b on its blocked copy xb, on thread t, which takes share u of nu of the
// image's work. With per_image (per_image_threads), each thread runs whole images on its own copy, xbs + t floats
// (u = 0 of 1): no barrier per image. Otherwise all threads copy each image into xbs (rows split, then a barrier)
// and share its work (u = t of nt).
template <class Work>
void direct_images(const Conv2dShape& s, const DirectGeom& g, const float* x, float* xbs, bool per_image,
                   const Work& work) {
  const int threads = omp_get_max_threads();
  const int64_t in_img = s.c * s.h * s.w, rows = s.c / DC_CB * s.h;
  if (per_image) {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      float* xb = xbs + t * g.floats;
      std::fill(xb, xb + g.floats, 0.f);
#pragma omp for schedule(static)
      for (int64_t b = 0; b < s.n; ++b) {
        direct_copy(s, g, x + b * in_img, xb, 0, rows);
        work(b, xb, t, 0, 1);
      }
    }
    return;
  }
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    std::fill(xbs + g.floats * t / nt, xbs + g.floats * (t + 1) / nt, 0.f);
    for (int64_t b = 0; b < s.n; ++b) {
#pragma omp barrier  // the zeroing, or the previous image's work, is done
      direct_copy(s, g, x + b * in_img, xbs, rows * t / nt, rows * (t + 1) / nt);
#pragma omp barrier
      work(b, xbs, t, t, nt);
    }
  }
}

void conv_direct(const Conv2dShape& s, const float* x, const float* pw, const float* bias,
                 const float* res, float* y, const Epilogue& e, void* ws) {
  const DirectGeom g = direct_geom(s);
  const int threads = omp_get_max_threads();
  const bool per_image = per_image_threads(s, threads);
  const int64_t rs = s.r * s.s, taps = s.c / DC_CB * rs, K = direct_k(s);
  const int64_t oh = s.out_h(), ow = s.out_w(), ohw = oh * ow;
  const int64_t out_img = s.k * ohw;
  float* xbs = sgemm::align64(ws);  // the blocked copy, one per thread when per_image
  int64_t* tap = reinterpret_cast<int64_t*>(xbs + (per_image ? threads : 1) * g.floats);
  direct_taps(s, g, tap);
  float* parts = sgemm::align64(tap + taps);
  const int oc = direct_oc(s), px = oc == 32 ? DC_PX : 7;
  const DirectTileFn* tiles = oc == 32 ? kDirectTiles32.data() : kDirectTiles64.data();
  const int64_t row_tiles = sgemm::ceil_div(ow, px), items = s.k / oc * oh * row_tiles, nblk = s.k / 64;
  const DirectStoreFn store = pick_direct_store(e.act);
  // Image b from its blocked copy xb, on thread t: share u of nu of its 64-channel blocks or 32-channel items. Whole
  // images per thread at batch >= threads: no barrier per image (the seed CNN's convs at batch 8).
  direct_images(s, g, x, xbs, per_image, [&](int64_t b, const float* xb, int t, int u, int nu) {
    if (oc == 64) {
      float* part = parts + t * oh * 7 * 64;
      // Whole rows of 7: per block of 64 output channels, one channel block's taps (36 KB of weights) at a
      // time over all rows, their partial sums in part[], so the weights stay in L1.
      for (int64_t blk = nblk * u / nu; blk < nblk * (u + 1) / nu; ++blk) {
        const int64_t chunk = rs * DC_CB * oc;  // floats of weights per channel block
        for (int64_t cb = 0; cb < s.c / DC_CB; ++cb) {
          const float* wc = pw + blk * K * oc + cb * chunk;
          for (int64_t oy = 0; oy < oh; ++oy)
            tiles[ow - 1](rs, tap + cb * rs, xb + oy * g.wq * DC_CB, wc, part + oy * 7 * 64, cb > 0,
                          wc + chunk + std::min<int64_t>(oy, 3) * chunk / 4);
        }
        for (int64_t oy = 0; oy < oh; ++oy) {
          const int64_t at = b * out_img + blk * oc * ohw + oy * ow;
          store(part + oy * 7 * 64, oc, static_cast<int>(ow), y + at, ohw, res ? res + at : nullptr,
                bias ? bias + blk * oc : nullptr, e);
        }
      }
      return;
    }
    // Items in block-major order: each thread's share of the output channels reads only their weights.
    alignas(64) float tmp[DC_PX * 32];
    for (int64_t it = items * u / nu; it < items * (u + 1) / nu; ++it) {
      const int64_t blk = it / (oh * row_tiles), oy = it / row_tiles % oh, ox = it % row_tiles * px;
      const int width = static_cast<int>(std::min<int64_t>(px, ow - ox));
      tiles[width - 1](taps, tap, xb + (oy * g.wq + ox) * DC_CB, pw + blk * K * oc, tmp, false, nullptr);
      const int64_t at = b * out_img + blk * oc * ohw + oy * ow + ox;
      store(tmp, oc, width, y + at, ohw, res ? res + at : nullptr, bias ? bias + blk * oc : nullptr, e);
    }
  });
}
#else
int direct_oc(const Conv2dShape&) { return 32; }
bool use_direct(const Conv2dShape&) { return false; }
int64_t direct_k(const Conv2dShape& s) { return s.c * s.r * s.s; }
void direct_pack(const Conv2dShape&, const float*, float*) {}
size_t direct_bytes(const Conv2dShape&) { return 0; }
void conv_direct(const Conv2dShape&, const float*, const float*, const float*, const float*, float*,
                 const Epilogue&, void*) {}
#endif

// ---------------------------------------------------------------------------------------------
// Planar direct convs for few input channels (AVX-512; the stems, e.g. ESPCN's 1 -> 64 5x5 at 240x320): K = c r s
// up to 75 over at most 4 channels. The input is zero-padded and split into stride phases as the GEMM path does
// (pad_image), so the output pixels of a row read consecutive floats at every tap; a tile is 4 output channels x
// up to 6 vectors of 16 pixels of one row: per tap 6 vector loads and 4 broadcast weights for 24 multiply-adds,
// and the accumulators are already NCHW rows (no transpose). The GEMM path spent its time around a K of 25 or 27:
// packing the K x N patches and storing a tile every 25 multiply-adds per lane. Paired C++ A/B against it, Xeon:
// ESPCN's stem 0.74x (1 thread, 64x64) to 0.79x (2 threads, 256x256), 3 -> 16 3x3 at 224 0.74x, 3 -> 32 stride 2 at
// 224 0.87x. ResNet-18's stem (K = 147) stays on the GEMM: 0.90x at 224 on 2 threads, but 1.01x on 1 and 1.08x at
// 112 (rows of 7 vectors: tiles of 6 and 1). A row's last tile reads at most 15 floats past the row (its width
// rounded up to 16): pad_geom's slack.
// ---------------------------------------------------------------------------------------------
constexpr int64_t kPlanarMaxK = 75;
#if EV_SGEMM_AVX512
constexpr int PL_OC = 4, PL_NV = 6;

bool use_planar(const Conv2dShape& s) {
  return s.groups == 1 && s.c <= 4 && s.c * s.r * s.s <= kPlanarMaxK && s.k % PL_OC == 0 && s.out_w() >= 16 &&
         kernel_fits(s) && !is_pointwise(s) && !is_strided_pointwise(s);
}

// Weights [k][K] -> [k / 4][K][4]: a tap's 4 broadcasts share a cache line.
void planar_pack(const Conv2dShape& s, const float* w, float* packed) {
  const int64_t K = s.c * s.r * s.s;
  for (int64_t o = 0; o < s.k; ++o)
    for (int64_t t = 0; t < K; ++t) packed[((o / PL_OC) * K + t) * PL_OC + o % PL_OC] = w[o * K + t];
}

// The padded copies of all images, then the K tap offsets.
size_t planar_bytes(const Conv2dShape& s) {
  return static_cast<size_t>(s.n * pad_geom(s).image) * sizeof(float) + s.c * s.r * s.s * sizeof(int64_t) + 64;
}

// 4 output channels x NV vectors of a row: in + tap[t] + 16 v is tap t's input for vector v; y: the first channel's
// row, channel planes `plane` floats apart (res the same); `width` pixels are stored.
template <int NV, Act ACT>
void planar_tile(int64_t K, const int64_t* __restrict tap, const float* __restrict in, const float* __restrict wq,
                 float* y, const float* res, int64_t plane, const float* bias, int width, const Epilogue& e) {
  sgemm::v16f acc[PL_OC][NV];
#pragma GCC unroll 4
  for (int o = 0; o < PL_OC; ++o)
#pragma GCC unroll 6
    for (int v = 0; v < NV; ++v) acc[o][v] = sgemm::v16f{};  // (= {} on the array compiled to a memset)
  for (int64_t t = 0; t < K; ++t) {
    const float* xi = in + tap[t];
    sgemm::v16f xv[NV];
#pragma GCC unroll 6
    for (int v = 0; v < NV; ++v) xv[v] = *reinterpret_cast<const sgemm::v16fu*>(xi + 16 * v);
#pragma GCC unroll 4
    for (int o = 0; o < PL_OC; ++o) {
      const float w = wq[t * PL_OC + o];
#pragma GCC unroll 6
      for (int v = 0; v < NV; ++v) acc[o][v] += xv[v] * w;
    }
  }
#pragma GCC unroll 4
  for (int o = 0; o < PL_OC; ++o)
#pragma GCC unroll 6
    for (int v = 0; v < NV; ++v) {
      const int64_t at = o * plane + 16 * v;
      cpu::store_epilogue16<ACT>(y + at, res ? res + at : nullptr, acc[o][v] + (bias ? bias[o] : 0.f),
                                 lane_range(0, width - 16 * v), e);
    }
}

using PlanarTileFn = void (*)(int64_t, const int64_t*, const float*, const float*, float*, const float*, int64_t,
                              const float*, int, const Epilogue&);
template <Act ACT, size_t... I>
constexpr std::array<PlanarTileFn, sizeof...(I)> planar_tiles(std::index_sequence<I...>) {
  return {&planar_tile<static_cast<int>(I) + 1, ACT>...};
}

// Offsets of the K taps (channel, ky, kx) into the padded copy, in pad_image's layout.
void planar_taps(const Conv2dShape& s, const PadGeom& pg, int64_t* tap) {
  for (int64_t t = 0; t < s.c * s.r * s.s; ++t) tap[t] = phase_tap(s, t, pg.chan, pg.phase, pg.wq, 1);
}

// Output rows [from, last) of one image from its padded copy xp, all channels: row `from` at dst (res the same),
// channel planes `plane` floats apart.
void planar_rows(const Conv2dShape& s, const PadGeom& pg, const int64_t* tap, const float* xp, const float* pw,
                 const float* bias, const float* res, float* dst, int64_t plane, int64_t from, int64_t last,
                 const Epilogue& e) {
  const auto tiles = sgemm::with_act(e.act, [](auto act) {
    return planar_tiles<decltype(act)::value>(std::make_index_sequence<PL_NV>{});
  });
  const int64_t K = s.c * s.r * s.s, ow = s.out_w();
  for (int64_t oy = from; oy < last; ++oy)
    for (int64_t o0 = 0; o0 < s.k; o0 += PL_OC) {
      const int64_t at = o0 * plane + (oy - from) * ow;
      for (int64_t x0 = 0; x0 < ow; x0 += 16 * PL_NV) {
        const int width = static_cast<int>(std::min<int64_t>(16 * PL_NV, ow - x0));
        tiles[(width - 1) / 16](K, tap, xp + oy * pg.wq + x0, pw + o0 * K, dst + at + x0,
                                res ? res + at + x0 : nullptr, plane, bias ? bias + o0 : nullptr, width, e);
      }
    }
}

void conv_planar(const Conv2dShape& s, const float* x, const float* pw, const float* bias, const float* res,
                 float* y, const Epilogue& e, void* ws) {
  const PadGeom pg = pad_geom(s);
  const int64_t oh = s.out_h(), ow = s.out_w(), ohw = oh * ow;
  const int64_t in_img = s.c * s.h * s.w, out_img = s.k * ohw;
  float* xp = sgemm::align64(ws);
  int64_t* tap = reinterpret_cast<int64_t*>(xp + s.n * pg.image);
  planar_taps(s, pg, tap);
  const int threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads) if (threads > 1 && s.n * out_img > 65536)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t rows = s.c * s.h, prows = padded_rows(s, pg);
    for (int64_t b = 0; b < s.n; ++b) {
      float* xb = xp + b * pg.image;
      zero_padding(s, pg, xb, prows * t / nt, prows * (t + 1) / nt);
      pad_image(s, pg, x + b * in_img, xb, rows * t / nt, rows * (t + 1) / nt);
      if (t == 0) std::fill(xb + s.c * pg.chan, xb + pg.image, 0.f);  // the slack the last row's tiles read
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t item = 0; item < s.n * oh; ++item) {
      const int64_t b = item / oh, oy = item % oh, at = b * out_img + oy * ow;
      planar_rows(s, pg, tap, xp + b * pg.image, pw, bias, res ? res + at : nullptr, y + at, ohw, oy, oy + 1, e);
    }
  }
}
#else
bool use_planar(const Conv2dShape&) { return false; }
void planar_pack(const Conv2dShape&, const float*, float*) {}
size_t planar_bytes(const Conv2dShape&) { return 0; }
void planar_taps(const Conv2dShape&, const PadGeom&, int64_t*) {}
void planar_rows(const Conv2dShape&, const PadGeom&, const int64_t*, const float*, const float*, const float*,
                 const float*, float*, int64_t, int64_t, int64_t, const Epilogue&) {}
void conv_planar(const Conv2dShape&, const float*, const float*, const float*, const float*, float*,
                 const Epilogue&, void*) {}
#endif

// ---------------------------------------------------------------------------------------------
// conv2d followed by a max pool (conv2d_max_pool_cpu): the classic CNN's conv -> relu -> 2x2 pool, ResNet's stem
// conv -> 3x3 stride-2 pool. On the GEMM, planar or direct path above, each thread computes the band of conv output
// rows under its pooled rows, all channels, into its own buffer and pools it: the conv output never crosses cores
// (in one shared buffer, the bands' edges shared cache lines at every plane), the pool is no step of its own (no
// second team wake-up), and conv rows under no window are not computed. Overlapping windows (kernel > stride) make
// neighbouring threads' bands share kernel - stride conv rows, which each computes. The padded copy of the input
// is shared: its rows are split over the threads, then a barrier; with images enough for every thread
// (per_image_threads), each thread runs whole images on its own copy instead. A residual (conv2d's, of the conv's
// output shape) takes the conv-then-pool path, as does the direct conv's 64-channel layout. (The direct conv then
// the pool made the seed CNN's 32 -> 64 at 13x13 + 2x2 pool slower than the GEMM fused: 43 -> 48 us.)
// ---------------------------------------------------------------------------------------------
bool pool_fused(const Conv2dShape& s, bool residual) {
  return !residual && kernel_fits(s) && !is_depthwise(s) && !is_pointwise(s) && !is_strided_pointwise(s) &&
         !use_winograd(s) && (!use_direct(s) || direct_oc(s) == 32);
}

// A packer for output columns [j0 + first, ...): a band of rows packed as if it were the whole image.
struct BandPackB {
  PaddedPackB pb;
  int64_t first;
  double pack_cost() const { return pb.pack_cost(); }
  const float* operator()(int64_t k0, int64_t kl, int64_t j0, int64_t nl, float* dst) const {
    return pb(k0, kl, j0 + first, nl, dst);
  }
};

// Rows [first, last).
struct BandRows {
  int64_t first, last;
};

// Thread t's pooled rows of prows over nt threads (empty past the first prows threads): both pool-fused paths.
BandRows pooled_share(int64_t prows, int t, int nt) {
  const int used = static_cast<int>(std::min<int64_t>(nt, prows));  // threads with pooled rows
  const int64_t p0 = std::min(prows, prows * t / used);
  return {p0, t < used ? prows * (t + 1) / used : p0};
}

// The conv rows under pooled rows [p0, p1). Neighbouring ranges overlap when the pool's kernel exceeds its stride
// (ResNet's 3x3 stride-2 pool).
BandRows band_rows(const Pool2dShape& ps, int64_t p0, int64_t p1) {
  return {std::max<int64_t>(0, p0 * ps.stride_h - ps.pad_t),
          std::min(ps.h, (p1 - 1) * ps.stride_h - ps.pad_t + ps.kh)};
}

// A band's conv rows are computed and pooled a chunk of pooled rows at a time, its conv output (all channels) about
// kPoolChunkBytes, so that the pool reads what the conv just wrote from the cache: one band over ResNet-18's
// stem (28 pooled rows, 1.6 MB per thread) made conv + pool no faster than the two steps.
constexpr int64_t kPoolChunkBytes = 256 << 10;

struct PoolFusedGeom {
  int64_t rows;     // most pooled rows per thread
  int64_t chunk;    // pooled rows per chunk
  int64_t pitch;    // floats of a chunk's conv rows of one channel: a band plane
  int64_t band;     // floats of a thread's conv output band: s.k planes
  int64_t gemm;     // floats of sgemm scratch per thread
  int64_t per;      // floats per thread: band + scratch (+ its padded copy, per_image)
  bool per_image;
};

PoolFusedGeom pool_fused_geom(const Conv2dShape& s, const Pool2dShape& ps, int threads) {
  PoolFusedGeom f;
  f.per_image = per_image_threads(s, threads);
  f.rows = f.per_image ? ps.out_h() : sgemm::ceil_div(ps.out_h(), std::min<int64_t>(threads, ps.out_h()));
  const int64_t row_bytes = s.k * s.out_w() * static_cast<int64_t>(sizeof(float)) * ps.stride_h;
  f.chunk = std::clamp<int64_t>(kPoolChunkBytes / row_bytes, 1, f.rows);
  f.pitch = ((f.chunk - 1) * ps.stride_h + ps.kh) * s.out_w();
  f.band = sgemm::round_up(s.k * f.pitch, 16);
  f.gemm = sgemm::round_up(sgemm::thread_scratch_floats(s.k / s.groups, s.c / s.groups * s.r * s.s), 16);
  f.per = f.band + f.gemm + (f.per_image ? pad_geom(s).image : 0);  // the GEMM path's (the direct's: direct_bytes)
  return f;
}

size_t pool_fused_bytes(const Conv2dShape& s, const Pool2dShape& ps, int threads) {
  const PoolFusedGeom f = pool_fused_geom(s, ps, threads);
  if (use_direct(s)) return direct_bytes(s) + static_cast<size_t>(threads * f.band + 16) * sizeof(float);
  return static_cast<size_t>((f.per_image ? 0 : pad_geom(s).image) + threads * f.per) * sizeof(float) + 64;
}

// Pooled rows [p0, p1) of image y, on the calling thread; band is its own. conv_rows(from, last, dst) computes conv
// output rows [from, last), all channels, with row `from` at dst and channel planes f.pitch apart.
// Chunk by chunk: the conv rows that the next chunk's windows share with this one's (kernel > stride) move to
// the front of each band plane instead of being computed again.
template <class ConvRows>
void conv_pool_band(const Conv2dShape& s, const Pool2dShape& ps, const PoolFusedGeom& f, int64_t p0, int64_t p1,
                    float* band, float* y, const ConvRows& conv_rows) {
  const int64_t ow = s.out_w(), poh = ps.out_h(), pow = ps.out_w();
  BandRows had{0, 0};  // the conv rows the band holds
  for (int64_t q0 = p0; q0 < p1; q0 += f.chunk) {
    const int64_t q1 = std::min(p1, q0 + f.chunk);
    const BandRows br = band_rows(ps, q0, q1);
    int64_t from = br.first;  // the first conv row to compute
    if (had.last > br.first) {
      for (int64_t ch = 0; ch < s.k; ++ch)
        std::memmove(band + ch * f.pitch, band + ch * f.pitch + (br.first - had.first) * ow,
                     (had.last - br.first) * ow * sizeof(float));
      from = had.last;
    }
    if (br.last > from) conv_rows(from, br.last, band + (from - br.first) * ow);
    // The pool over the chunk: s.k planes of its conv rows, padded so that it has exactly pooled rows [q0, q1).
    Pool2dShape b = ps;
    b.n = 1, b.h = br.last - br.first;
    b.pad_t = br.first - (q0 * ps.stride_h - ps.pad_t);
    b.pad_b = (q1 - 1) * ps.stride_h - ps.pad_t + ps.kh - br.last;
    max_pool2d_cpu_planes(b, band, f.pitch, y + q0 * pow, poh * pow);
    had = br;
  }
}

// conv_pool_band's rows on the GEMM path, from the padded image xp; scratch is the thread's own.
struct GemmRows {
  const Conv2dShape& s;
  const PadGeom& pg;
  const PoolFusedGeom& f;
  const float *xp, *pw, *bias;
  const Epilogue& e;
  float* scratch;
  void operator()(int64_t from, int64_t last, float* dst) const {
    const int64_t ow = s.out_w(), cols = (last - from) * ow;
    const int64_t cg = s.c / s.groups, kg = s.k / s.groups, K = cg * s.r * s.s;
    for (int64_t g = 0; g < s.groups; ++g) {
      const BandPackB pb{PaddedPackB{&s, &pg, xp + g * cg * pg.chan}, from * ow};
      const sgemm::CView cv{dst + g * kg * f.pitch, f.pitch, cols, cols, cols, bias ? bias + g * kg : nullptr, true,
                            nullptr, 1.f, e};
      sgemm::run_tile_range(kg, K, packed_group(s, pw, g), pb, cv, 0, kg, 0, cols, scratch);
    }
  }
};

// The pool-fused conv on the padded copy: band rows from the GEMM (GemmRows), or from the planar tiles (use_planar).
void conv_padded_pool(const Conv2dShape& s, const Pool2dShape& ps, const float* x, const float* pw,
                      const float* bias, float* y, const Epilogue& e, void* ws) {
  const PadGeom pg = pad_geom(s);
  const int threads = omp_get_max_threads();
  const PoolFusedGeom f = pool_fused_geom(s, ps, threads);
  const int64_t in_img = s.c * s.h * s.w, pool_img = s.k * ps.out_h() * ps.out_w(), prows = ps.out_h();
  const bool planar = use_planar(s);
  int64_t tap[kPlanarMaxK];
  if (planar) planar_taps(s, pg, tap);
  auto pool_band = [&](int64_t p0, int64_t p1, const float* xp, float* band, float* yb) {
    if (planar)
      conv_pool_band(s, ps, f, p0, p1, band, yb, [&](int64_t from, int64_t last, float* dst) {
        planar_rows(s, pg, tap, xp, pw, bias, nullptr, dst, f.pitch, from, last, e);
      });
    else
      conv_pool_band(s, ps, f, p0, p1, band, yb, GemmRows{s, pg, f, xp, pw, bias, e, band + f.band});
  };
  float* base = sgemm::align64(ws);
  if (f.per_image) {
#pragma omp parallel num_threads(threads)
    {
      float* xp = base + omp_get_thread_num() * f.per;
      float* band = xp + pg.image;
      zero_padding(s, pg, xp, 0, padded_rows(s, pg));  // once per call: each copy rewrites only the interior
      std::fill(xp + s.c * pg.chan, xp + pg.image, 0.f);
#pragma omp for schedule(static)
      for (int64_t b = 0; b < s.n; ++b) {
        pad_image(s, pg, x + b * in_img, xp, 0, s.c * s.h);
        pool_band(0, prows, xp, band, y + b * pool_img);
      }
    }
    return;
  }
  float* xp = base;
  std::fill(xp + s.c * pg.chan, xp + pg.image, 0.f);
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t in_rows = s.c * s.h, pad_rows = padded_rows(s, pg);  // split for the padded copy
    const BandRows pr = pooled_share(prows, t, nt);
    const int64_t p0 = pr.first, p1 = pr.last;
    float* band = xp + pg.image + t * f.per;
    zero_padding(s, pg, xp, pad_rows * t / nt, pad_rows * (t + 1) / nt);
    for (int64_t b = 0; b < s.n; ++b) {
      pad_image(s, pg, x + b * in_img, xp, in_rows * t / nt, in_rows * (t + 1) / nt);
#pragma omp barrier
      if (p0 < p1) pool_band(p0, p1, xp, band, y + b * pool_img);
      if (b + 1 < s.n) {
#pragma omp barrier  // the next image's copy overwrites xp
      }
    }
  }
}

#if EV_SGEMM_AVX512
// The pool-fused conv on the direct kernel (use_direct, 32-channel tiles): the blocked copy of each image is shared
// (rows split over the threads, then a barrier), and each thread's band of conv rows comes from direct_rows.
void conv_direct_pool(const Conv2dShape& s, const Pool2dShape& ps, const float* x, const float* pw, const float* bias,
                      float* y, const Epilogue& e, void* ws) {
  const DirectGeom g = direct_geom(s);
  const int threads = omp_get_max_threads();
  const PoolFusedGeom f = pool_fused_geom(s, ps, threads);
  const int64_t pool_img = s.k * ps.out_h() * ps.out_w(), prows = ps.out_h();
  float* xbs = sgemm::align64(ws);  // the blocked copy, one per thread when per_image
  int64_t* tap = reinterpret_cast<int64_t*>(xbs + (f.per_image ? threads : 1) * g.floats);
  direct_taps(s, g, tap);
  float* bands = sgemm::align64(tap + s.c / DC_CB * s.r * s.s);
  direct_images(s, g, x, xbs, f.per_image, [&](int64_t b, const float* xb, int t, int u, int nu) {
    const BandRows pr = pooled_share(prows, u, nu);
    if (pr.first < pr.last)
      conv_pool_band(s, ps, f, pr.first, pr.last, bands + t * f.band, y + b * pool_img,
                     [&](int64_t from, int64_t last, float* dst) {
                       direct_rows(s, g, tap, xb, pw, bias, dst, f.pitch, from, last, e);
                     });
  });
}
#else
void conv_direct_pool(const Conv2dShape&, const Pool2dShape&, const float*, const float*, const float*, float*,
                      const Epilogue&, void*) {}
#endif

// Workspace of the kernels, packed weights not included.
size_t conv2d_workspace(const Conv2dShape& s) {
  const int threads = omp_get_max_threads();
  if (!kernel_fits(s)) return 0;
  if (is_depthwise(s)) {
    const int64_t per = dw_cblock(s) ? cb_thread_floats(s) : dw3_fast(s) ? dw3_thread_floats(s) : dw_thread_floats(s);
    return static_cast<size_t>(per) * threads * sizeof(float) + 64;
  }
  if (pointwise_split_k(s, threads))
    return static_cast<size_t>(split_k_geom(s, threads).per) * threads * sizeof(float) + 64;
  if (is_pointwise(s))
    return sgemm::workspace_bytes(s.k / s.groups, s.c / s.groups, threads);
  if (is_strided_pointwise(s))
    return gathered_floats(s) * sizeof(float) + sgemm::workspace_bytes(s.k / s.groups, s.c / s.groups, threads) + 64;
  if (use_winograd(s)) return winograd_bytes(s, threads);
  if (use_direct(s)) return direct_bytes(s);
  if (use_planar(s)) return planar_bytes(s);
  const PadGeom pg = pad_geom(s);
  const int64_t gemm1 = sgemm::round_up(static_cast<int64_t>(padded_gemm_bytes(s) / sizeof(float)), 16);
  const int64_t floats = per_image_threads(s, threads)
                             ? threads * (pg.image + gemm1)
                             : pg.image + static_cast<int64_t>(sgemm::workspace_bytes(
                                              s.k / s.groups, s.c / s.groups * s.r * s.s, threads) /
                                          sizeof(float));
  return static_cast<size_t>(floats) * sizeof(float) + 64;
}

}  // namespace

int64_t conv2d_cpu_packed_floats(const Conv2dShape& s) {
  if (!kernel_fits(s) || is_depthwise(s)) return 0;
  if (use_winograd(s)) return 36 * wino_geom(s).ustride;
  if (use_direct(s)) return s.k * direct_k(s);
  if (use_planar(s)) return s.k * s.c * s.r * s.s;
  return s.groups * sgemm::packed_a_floats(s.k / s.groups, s.c / s.groups * s.r * s.s);
}

void conv2d_cpu_pack(const Conv2dShape& s, const float* w, float* packed) {
  if (conv2d_cpu_packed_floats(s) == 0) return;
  if (use_winograd(s)) return wino_weights(s, wino_geom(s), w, packed);
  if (use_direct(s)) return direct_pack(s, w, packed);
  if (use_planar(s)) return planar_pack(s, w, packed);
  const int64_t kg = s.k / s.groups, K = s.c / s.groups * s.r * s.s;
  const int threads = omp_get_max_threads();
  if (pointwise_split_k(s, threads)) return sgemm::pack_a(w, s.k, s.c, packed, split_k_depth(s, threads));
#pragma omp parallel for schedule(static) if (s.k * K > 65536)
  for (int64_t g = 0; g < s.groups; ++g)
    sgemm::pack_a(w + g * kg * K, kg, K, packed + g * sgemm::packed_a_floats(kg, K));
}

namespace {
// Workspace bytes for the weights that packed_or_pack packs per call (none when prepacked).
size_t own_packing_bytes(const Conv2dShape& s, bool prepacked) {
  return prepacked ? 0 : sgemm::round_up(conv2d_cpu_packed_floats(s), 16) * sizeof(float);
}
}  // namespace

size_t conv2d_cpu_workspace(const Conv2dShape& s, bool prepacked) {
  return conv2d_workspace(s) + own_packing_bytes(s, prepacked);
}

namespace {
// The weights in the kernels' layout: `packed` when given, else packed into the front of the workspace, which
// then starts after them.
const float* packed_or_pack(const Conv2dShape& s, const float* w, const float* packed, void*& workspace) {
  const int64_t own = packed ? 0 : conv2d_cpu_packed_floats(s);
  if (own == 0) return packed;
  float* p = sgemm::align64(workspace);
  conv2d_cpu_pack(s, w, p);
  workspace = p + sgemm::round_up(own, 16);
  return p;
}
}  // namespace

void conv2d_cpu(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                const float* residual, float* y, const Epilogue& e, void* workspace, const float* packed) {
  packed = packed_or_pack(s, w, packed, workspace);
  if (!kernel_fits(s))
    conv2d_ref(s, x, w, bias, residual, y, e);
  else if (is_depthwise(s) && dw_cblock(s))
    conv_dw_cblock(s, x, w, bias, residual, y, e, workspace);
  else if (is_depthwise(s) && dw3_fast(s))
    conv_dw3(s, x, w, bias, residual, y, e, workspace);
  else if (is_depthwise(s))
    conv_depthwise(s, x, w, bias, residual, y, e, workspace);
  else if (pointwise_split_k(s, omp_get_max_threads()))
    conv_pointwise_split_k(s, x, packed, bias, residual, y, e, workspace);
  else if (is_pointwise(s))
    conv_pointwise(s, x, packed, bias, residual, y, e, workspace);
  else if (is_strided_pointwise(s))
    conv_strided_pointwise(s, x, packed, bias, residual, y, e, workspace);
  else if (use_winograd(s))
    conv_winograd(s, x, packed, bias, residual, y, e, workspace);
  else if (use_direct(s))
    conv_direct(s, x, packed, bias, residual, y, e, workspace);
  else if (use_planar(s))
    conv_planar(s, x, packed, bias, residual, y, e, workspace);
  else
    conv_padded(s, x, packed, bias, residual, y, e, workspace);
}

namespace {
int64_t mid_floats(const Conv2dShape& s) { return sgemm::round_up(s.n * s.k * s.out_h() * s.out_w(), 16); }
}  // namespace

size_t conv2d_max_pool_cpu_workspace(const Conv2dShape& s, const Pool2dShape& ps, bool residual, bool prepacked) {
  if (pool_fused(s, residual))
    return own_packing_bytes(s, prepacked) + pool_fused_bytes(s, ps, omp_get_max_threads());
  return static_cast<size_t>(mid_floats(s)) * sizeof(float) + 64 + conv2d_cpu_workspace(s, prepacked);
}

void conv2d_max_pool_cpu(const Conv2dShape& s, const Pool2dShape& ps, const float* x, const float* w,
                         const float* bias, const float* residual, float* y, const Epilogue& e, void* workspace,
                         const float* packed) {
  packed = packed_or_pack(s, w, packed, workspace);
  if (pool_fused(s, residual) && use_direct(s)) return conv_direct_pool(s, ps, x, packed, bias, y, e, workspace);
  if (pool_fused(s, residual)) return conv_padded_pool(s, ps, x, packed, bias, y, e, workspace);
  // Any other conv path: the conv, then the pool, through the workspace.
  float* conv = sgemm::align64(workspace);
  conv2d_cpu(s, x, w, bias, residual, conv, e, conv + mid_floats(s), packed);
  max_pool2d_cpu(ps, conv, y);
}

int64_t conv2d_dw_pw_cpu_packed_floats(const DwPwShape& d) {
  if (cpu::dw_pw_blocked(d)) return cpu::dw_pw_blocked_packed_floats(d);
  return expand_packed_offset(d) + (d.expand ? conv2d_cpu_packed_floats(d.ex) : 0);
}

void conv2d_dw_pw_cpu_pack(const DwPwShape& d, const float* w_pw, const float* w_ex, const float* w_dw,
                           float* packed) {
  if (cpu::dw_pw_blocked(d)) return cpu::dw_pw_blocked_pack(d, w_ex, w_dw, w_pw, packed);
  conv2d_cpu_pack(d.pw, w_pw, packed);
  if (d.expand) conv2d_cpu_pack(d.ex, w_ex, packed + expand_packed_offset(d));
}

bool conv2d_dw_pw_cpu_packs_depthwise(const DwPwShape& d) { return cpu::dw_pw_blocked(d); }

size_t conv2d_dw_pw_cpu_workspace(const DwPwShape& d, bool prepacked) {
  const size_t own = prepacked ? 0 : sgemm::round_up(conv2d_dw_pw_cpu_packed_floats(d), 16) * sizeof(float);
  if (cpu::dw_pw_blocked(d)) return cpu::dw_pw_blocked_workspace(d) + own;
  if (dw_pw_band(d))
    return static_cast<size_t>(band_geom(d).per) * omp_get_max_threads() * sizeof(float) + 64 + own;
  const size_t mids = (mid_floats(d.dw) + (d.expand ? mid_floats(d.ex) : 0)) * sizeof(float) + 64;
  return own + mids + std::max({conv2d_cpu_workspace(d.dw), conv2d_cpu_workspace(d.pw, true),
                                d.expand ? conv2d_cpu_workspace(d.ex, true) : size_t{0}});
}

void conv2d_dw_pw_cpu(const DwPwShape& d, const float* x, const float* w_ex, const float* b_ex,
                      const float* w_dw, const float* b_dw, const float* w_pw, const float* b_pw,
                      const float* residual, float* y, const Epilogue& e_pw, void* workspace,
                      const float* packed) {
  if (!packed) {  // pack into the front of the workspace
    float* p = sgemm::align64(workspace);
    conv2d_dw_pw_cpu_pack(d, w_pw, w_ex, w_dw, p);
    packed = p;
    workspace = p + sgemm::round_up(conv2d_dw_pw_cpu_packed_floats(d), 16);
  }
  if (cpu::dw_pw_blocked(d))
    return cpu::conv_dw_pw_blocked(d, x, b_ex, b_dw, b_pw, residual, y, e_pw, workspace, packed);
  if (dw_pw_band(d))
    return conv_dw_pw_band(d, x, b_ex, w_dw, b_dw, b_pw, residual, y, e_pw, workspace, packed);
  // Any other depthwise conv: the convs one after the other, through the workspace.
  float* mid = sgemm::align64(workspace);
  float* expanded = mid + mid_floats(d.dw);
  void* rest = expanded + (d.expand ? mid_floats(d.ex) : 0);
  if (d.expand) {
    conv2d_cpu(d.ex, x, w_ex, b_ex, nullptr, expanded, d.ex_epi, rest, packed + expand_packed_offset(d));
    x = expanded;
  }
  conv2d_cpu(d.dw, x, w_dw, b_dw, nullptr, mid, d.dw_epi, rest);
  conv2d_cpu(d.pw, mid, w_pw, b_pw, residual, y, e_pw, rest, packed);
}

}  // namespace ev
