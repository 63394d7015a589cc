// conv2d_dw_pw on small maps (MobileNetV2's and EfficientNet-Lite0's 14x14 and 7x7 blocks), AVX-512 builds.
//
// Why: run as NCHW steps, these blocks were 1.1-1.3x ONNX Runtime's time although each conv alone was at parity.
// A depthwise conv over 7- or 14-wide rows fills few lanes of a 16-lane vector (or transposes channel blocks in
// and out), and the 1x1 convs split their work differently from the depthwise, so the expanded map crossed
// cores twice per block. Here the expanded channels live in blocks of 16: a pixel's 16 channels are one vector,
// so the depthwise is one multiply-add per tap and pixel whatever the width, and both 1x1 convs are
// broadcast-times-vector tiles (14 pixels x 32 channels, 28 accumulators) that need no packing of their input.
// Each thread takes a contiguous range of the channel blocks through all three convs: its expand tiles write
// its blocks (zero-padded for the depthwise), its depthwise reads only them, and its projection tiles sum over
// only them into a private partial [pixel][output channel] map. After one barrier each thread adds up the
// partials of its share of the pixels and stores them with the epilogue, transposed to NCHW. Nothing crosses
// cores but the block input (read by every thread) and half of each partial map.
#include "cpu/dw_pw_blocked.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "cpu/sgemm.h"
#include "cpu/vec_act.h"
#include "cpu/vec_lanes.h"

namespace ev {
namespace cpu {

#if EV_SGEMM_AVX512
namespace {

using sgemm::v16f;
using sgemm::v16fu;
constexpr int CB = 16;  // channels per block: one vector, one cache line per pixel
constexpr int PX = 14;  // pixels per tile: 2 x 14 accumulators + 2 weight vectors of the 32 registers
// The widest depthwise output this kernel takes. MobileNetV2's fused steps, this kernel against the previous
// paths in one process (Xeon, 2 threads, step medians): 0.71-0.79x the band kernel's time at 28x28 (and the
// stride-2 block 56 -> 28 0.74x), 0.78-0.88x the three convs in turn at 14x14 and 7x7, but 1.02-1.03x the band
// kernel at 56 wide, whose bands keep the larger maps in L2.
constexpr int64_t kMaxWidth = 28;

struct Geom {
  int64_t c_in, C, nb, K, Kp, kb, rs;  // block input channels; expanded channels, blocks; outputs, padded, blocks
  int64_t hw, hp, wp, oh, ow, ohw;     // input pixels, padded input rows / columns, output rows / columns
  int64_t eblock, dblock;              // floats of one channel block: padded expanded map, depthwise output
  int64_t dw_off, pw_off, packed;      // packed layout: expand [nb][c_in][16], depthwise [nb][rs][16], 1x1 [kb][C][16]
  int threads;                         // the team: at most one per channel block
  int64_t mb;                          // most blocks a thread takes
  int64_t e_floats, d_floats, p_floats, per;  // one thread's buffers and their sum
};

Geom geom(const DwPwShape& d) {
  const Conv2dShape &dw = d.dw, &ex = d.ex, &pw = d.pw;
  Geom g;
  g.c_in = ex.c, g.C = dw.c, g.nb = g.C / CB, g.K = pw.k, g.Kp = sgemm::round_up(g.K, CB), g.kb = g.Kp / CB;
  g.rs = dw.r * dw.s;
  g.hw = dw.h * dw.w, g.hp = dw.h + dw.pad_t + dw.pad_b, g.wp = dw.w + dw.pad_l + dw.pad_r;
  g.oh = dw.out_h(), g.ow = dw.out_w(), g.ohw = g.oh * g.ow;
  g.eblock = g.hp * g.wp * CB, g.dblock = g.ohw * CB;
  g.dw_off = sgemm::round_up(g.C * g.c_in, 16);
  g.pw_off = g.dw_off + g.C * g.rs;
  g.packed = g.pw_off + g.Kp * g.C;
  g.threads = static_cast<int>(std::min<int64_t>(omp_get_max_threads(), g.nb));
  g.mb = sgemm::ceil_div(g.nb, g.threads);
  g.e_floats = g.mb * g.eblock, g.d_floats = g.mb * g.dblock;
  g.p_floats = g.ohw * g.Kp;
  g.per = g.e_floats + g.d_floats + g.p_floats;
  return g;
}

// out[j * ldo + v * 16 + l] = sum over q < nq of in(q, j) * w[v * wv + q * 16 + l] (j < W pixels, v < V
// vectors of 16 output channels), in(q, j) = in[q / 16 * bs + q % 16 * cs + j * PXS]: the expand conv reads the
// NCHW block input (cs: a plane, PXS 1), the projection the channel-blocked depthwise output (cs 1, PXS 16).
template <int W, int V, int PXS>
void bcast_tile(int64_t nq, const float* __restrict in, int64_t bs, int64_t cs, const float* __restrict w,
                int64_t wv, float* __restrict out, int64_t ldo) {
  v16f acc[V][W];
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v)
#pragma GCC unroll 14
    for (int j = 0; j < W; ++j) acc[v][j] = v16f{};
  for (int64_t q0 = 0; q0 < nq; q0 += CB) {
    const float* ib = in + q0 / CB * bs;
    const float* wq = w + q0 * CB;
    const int n = static_cast<int>(std::min<int64_t>(CB, nq - q0));
#pragma GCC unroll 4
    for (int i = 0; i < n; ++i) {
      const float* xi = ib + i * cs;
      v16f wr[V];
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) wr[v] = *reinterpret_cast<const v16fu*>(wq + v * wv + i * CB);
#pragma GCC unroll 14
      for (int j = 0; j < W; ++j) {
        const float x = xi[j * PXS];
#pragma GCC unroll 2
        for (int v = 0; v < V; ++v) acc[v][j] += wr[v] * x;
      }
    }
  }
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v)
#pragma GCC unroll 14
    for (int j = 0; j < W; ++j) *reinterpret_cast<v16fu*>(out + j * ldo + v * CB) = acc[v][j];
}

using TileFn = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t);
template <int V, int PXS, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tiles(std::index_sequence<I...>) {
  return {&bcast_tile<static_cast<int>(I) + 1, V, PXS>...};
}
// [V - 1][W - 1]
constexpr std::array<std::array<TileFn, PX>, 2> kExpandTiles = {tiles<1, 1>(std::make_index_sequence<PX>{}),
                                                                tiles<2, 1>(std::make_index_sequence<PX>{})};
constexpr std::array<std::array<TileFn, PX>, 2> kProjectTiles = {tiles<1, CB>(std::make_index_sequence<PX>{}),
                                                                 tiles<2, CB>(std::make_index_sequence<PX>{})};

// The expand and depthwise activations: Clip and ReLU (clamps, the inverted-residual blocks' ReLU6) in the store;
// others on whole rows afterwards (activate_span).
struct VecEpi {
  bool clamp = false, span = false;
  v16f lo{}, hi{};
  void (*span_fn)(const float*, float*, int64_t, float, float) = nullptr;
  float al = 0.f, be = 0.f;
  explicit VecEpi(const Epilogue& e) : al(e.alpha), be(e.beta) {
    if (e.act == Act::Clip || e.act == Act::ReLU) {
      clamp = true;
      lo = v16f{} + (e.act == Act::Clip ? e.alpha : 0.f);
      hi = v16f{} + (e.act == Act::Clip ? e.beta : __builtin_inff());
    } else if (e.act != Act::None) {
      span = true;
      span_fn = sgemm::with_act(e.act, [](auto act) -> void (*)(const float*, float*, int64_t, float, float) {
        return activate_span<decltype(act)::value>;
      });
    }
  }
  v16f operator()(v16f v) const {
    return clamp ? clamp_v(v, lo, hi) : v;
  }
  void rows(float* p, int64_t n) const {
    if (span) span_fn(p, p, n, al, be);
  }
};

// Outputs [pa, pb) of one image: the threads' partial sums (partial(u) + pixel * Kp + channel) added up
// 16 pixels x 16 channels at a time, transposed in registers, then bias, residual and activation on the
// way to y [K][ohw] (res the same).
template <Act ACT>
void reduce_store(const Geom& g, int nt, const float* base, int64_t pa, int64_t pb, const float* bias,
                  const float* res, float* y, const Epilogue& e) {
  const float* part = base + g.e_floats + g.d_floats;
  for (int64_t p = pa; p < pb; p += CB) {
    const int n = static_cast<int>(std::min<int64_t>(CB, pb - p));
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
    for (int64_t kv = 0; kv < g.kb; ++kv) {
      v16f s[CB];
#pragma GCC unroll 16
      for (int j = 0; j < CB; ++j) {
        s[j] = v16f{};
        if (j < n)
          for (int u = 0; u < nt; ++u)
            s[j] += *reinterpret_cast<const v16f*>(part + u * g.per + (p + j) * g.Kp + kv * CB);
      }
      transpose16(s);
      const int lanes = static_cast<int>(std::min<int64_t>(CB, g.K - kv * CB));
      for (int l = 0; l < lanes; ++l) {
        const int64_t k = kv * CB + l, at = k * g.ohw + p;
        store_epilogue16<ACT>(y + at, res ? res + at : nullptr, s[l] + (bias ? bias[k] : 0.f), m, e);
      }
    }
  }
}

using ReduceFn = void (*)(const Geom&, int, const float*, int64_t, int64_t, const float*, const float*, float*,
                          const Epilogue&);

template <int R>
void depthwise_block(const Geom& g, const Conv2dShape& dw, const float* __restrict e, const float* __restrict wk,
                     v16f bias, const VecEpi& epi, float* __restrict out) {
  const int64_t st_h = dw.stride_h, st_w = dw.stride_w;
  v16f wr[R * R];
#pragma GCC unroll 25
  for (int t = 0; t < R * R; ++t) wr[t] = *reinterpret_cast<const v16fu*>(wk + t * CB);
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const float* e0 = e + (oy * st_h * g.wp + ox * st_w) * CB;
      v16f acc = bias;
#pragma GCC unroll 5
      for (int ky = 0; ky < R; ++ky)
#pragma GCC unroll 5
        for (int kx = 0; kx < R; ++kx)
          acc += *reinterpret_cast<const v16f*>(e0 + (ky * g.wp + kx) * CB) * wr[ky * R + kx];
      *reinterpret_cast<v16f*>(out + (oy * g.ow + ox) * CB) = epi(acc);
    }
  epi.rows(out, g.dblock);
}

// Zero the padding of a thread's expanded blocks (the interior is rewritten for every image).
void zero_borders(const Conv2dShape& dw, const Geom& g, float* e, int64_t blocks) {
  const int64_t row = g.wp * CB;
  for (int64_t l = 0; l < blocks; ++l) {
    float* eb = e + l * g.eblock;
    std::memset(eb, 0, dw.pad_t * row * sizeof(float));
    std::memset(eb + (dw.pad_t + dw.h) * row, 0, dw.pad_b * row * sizeof(float));
    for (int64_t iy = dw.pad_t; iy < dw.pad_t + dw.h; ++iy) {  // a pixel is one vector (no memset call each)
      for (int64_t ix = 0; ix < dw.pad_l; ++ix) *reinterpret_cast<v16f*>(eb + iy * row + ix * CB) = v16f{};
      for (int64_t ix = dw.pad_l + dw.w; ix < g.wp; ++ix) *reinterpret_cast<v16f*>(eb + iy * row + ix * CB) = v16f{};
    }
  }
}

}  // namespace

bool dw_pw_blocked(const DwPwShape& d) {
  const Conv2dShape &dw = d.dw, &ex = d.ex, &pw = d.pw;
  return d.expand && ex.groups == 1 && dw.groups == dw.c && dw.k == dw.c && dw.c % CB == 0 && dw.r == dw.s &&
         (dw.r == 3 || dw.r == 5) && dw.dil_h == 1 && dw.dil_w == 1 && pw.groups == 1 && dw.out_h() > 0 &&
         dw.out_w() > 0 && dw.out_w() <= kMaxWidth;
}

int64_t dw_pw_blocked_packed_floats(const DwPwShape& d) { return geom(d).packed; }

void dw_pw_blocked_pack(const DwPwShape& d, const float* w_ex, const float* w_dw, const float* w_pw, float* packed) {
  const Geom g = geom(d);
  std::fill(packed, packed + g.packed, 0.f);
  for (int64_t k = 0; k < g.C; ++k)
    for (int64_t c = 0; c < g.c_in; ++c) packed[(k / CB * g.c_in + c) * CB + k % CB] = w_ex[k * g.c_in + c];
  for (int64_t ch = 0; ch < g.C; ++ch)
    for (int64_t t = 0; t < g.rs; ++t) packed[g.dw_off + (ch / CB * g.rs + t) * CB + ch % CB] = w_dw[ch * g.rs + t];
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t q = 0; q < g.C; ++q) packed[g.pw_off + (k / CB * g.C + q) * CB + k % CB] = w_pw[k * g.C + q];
}

size_t dw_pw_blocked_workspace(const DwPwShape& d) {
  const Geom g = geom(d);
  return static_cast<size_t>(g.per) * g.threads * sizeof(float) + 64;
}

void conv_dw_pw_blocked(const DwPwShape& d, const float* x, const float* b_ex, const float* b_dw, const float* b_pw,
                        const float* res, float* y, const Epilogue& e_pw, void* ws, const float* packed) {
  const Conv2dShape& dw = d.dw;
  const Geom g = geom(d);
  const VecEpi ex_epi(d.ex_epi), dw_epi(d.dw_epi);
  const ReduceFn reduce =
      sgemm::with_act(e_pw.act, [](auto act) -> ReduceFn { return reduce_store<decltype(act)::value>; });
  float* base = sgemm::align64(ws);
#pragma omp parallel num_threads(g.threads) if (g.threads > 1)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t b0 = g.nb * t / nt, b1 = g.nb * (t + 1) / nt;  // this thread's channel blocks
    float* E = base + t * g.per;  // expanded blocks, zero-padded: [block][hp][wp][16]
    float* D = E + g.e_floats;    // depthwise output: [block][oh][ow][16]
    float* P = D + g.d_floats;    // projection partial sums over this thread's channels: [pixel][Kp]
    zero_borders(dw, g, E, b1 - b0);
    alignas(64) float tmp[PX * 2 * CB];
    for (int64_t b = 0; b < dw.n; ++b) {
      const float* xb = x + b * g.c_in * g.hw;
      // Expand: tiles of 32 (or 16) channels x 14 pixels (any run of the flattened map), into the padded blocks.
      for (int64_t blk = b0; blk < b1; blk += 2) {
        const int V = static_cast<int>(std::min<int64_t>(2, b1 - blk));
        v16f bias[2] = {};
        for (int v = 0; v < V; ++v)
          if (b_ex) bias[v] = *reinterpret_cast<const v16fu*>(b_ex + (blk + v) * CB);
        float* eb = E + (blk - b0) * g.eblock + (dw.pad_t * g.wp + dw.pad_l) * CB;
        for (int64_t p0 = 0; p0 < g.hw; p0 += PX) {
          const int n = static_cast<int>(std::min<int64_t>(PX, g.hw - p0));
          kExpandTiles[V - 1][n - 1](g.c_in, xb + p0, CB * g.hw, g.hw, packed + blk * g.c_in * CB, g.c_in * CB,
                                     tmp, 2 * CB);
          int64_t iy = p0 / dw.w, ix = p0 % dw.w;
          for (int j = 0; j < n; ++j) {
            float* at = eb + (iy * g.wp + ix) * CB;
            for (int v = 0; v < V; ++v)
              *reinterpret_cast<v16f*>(at + v * g.eblock) =
                  ex_epi(*reinterpret_cast<const v16f*>(tmp + j * 2 * CB + v * CB) + bias[v]);
            if (++ix == dw.w) ix = 0, ++iy;
          }
        }
        if (ex_epi.span)
          for (int v = 0; v < V; ++v)
            for (int64_t iy = 0; iy < dw.h; ++iy) ex_epi.rows(eb + v * g.eblock + iy * g.wp * CB, dw.w * CB);
      }
      // Depthwise, block by block.
      for (int64_t blk = b0; blk < b1; ++blk) {
        const float* wk = packed + g.dw_off + blk * g.rs * CB;
        const v16f bias = b_dw ? *reinterpret_cast<const v16fu*>(b_dw + blk * CB) : v16f{};
        const float* eb = E + (blk - b0) * g.eblock;
        float* db = D + (blk - b0) * g.dblock;
        if (dw.r == 3) depthwise_block<3>(g, dw, eb, wk, bias, dw_epi, db);
        else depthwise_block<5>(g, dw, eb, wk, bias, dw_epi, db);
      }
      // Projection, summed over this thread's channels only: tiles of 14 pixels x 32 (or 16) output channels.
      const int64_t nq = (b1 - b0) * CB;
      for (int64_t p0 = 0; p0 < g.ohw; p0 += PX) {
        const int n = static_cast<int>(std::min<int64_t>(PX, g.ohw - p0));
        for (int64_t kb = 0; kb < g.kb; kb += 2) {
          const int V = static_cast<int>(std::min<int64_t>(2, g.kb - kb));
          kProjectTiles[V - 1][n - 1](nq, D + p0 * CB, g.dblock, 1, packed + g.pw_off + (kb * g.C + b0 * CB) * CB,
                                      g.C * CB, P + p0 * g.Kp + kb * CB, g.Kp);
        }
      }
#pragma omp barrier
      const int64_t o = b * g.K * g.ohw;
      reduce(g, nt, base, g.ohw * t / nt, g.ohw * (t + 1) / nt, b_pw, res ? res + o : nullptr, y + o, e_pw);
      if (b + 1 < dw.n) {
#pragma omp barrier  // the next image's projection overwrites the partials
      }
    }
  }
}
#else
bool dw_pw_blocked(const DwPwShape&) { return false; }
int64_t dw_pw_blocked_packed_floats(const DwPwShape&) { return 0; }
void dw_pw_blocked_pack(const DwPwShape&, const float*, const float*, const float*, float*) {}
size_t dw_pw_blocked_workspace(const DwPwShape&) { return 0; }
void conv_dw_pw_blocked(const DwPwShape&, const float*, const float*, const float*, const float*, const float*, float*,
                        const Epilogue&, void*, const float*) {}
#endif

}  // namespace cpu
}  // namespace ev
