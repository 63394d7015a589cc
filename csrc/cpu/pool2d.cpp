// 2-D pooling on the CPU: max and average over windows, and global max and average, each as the
// reference and the fast path.
//
// Semantics are PyTorch's, extended to asymmetric and arbitrarily large pads as ONNX allows:
// - max: the window is the dilated taps inside the input; NaN propagates; a window with no tap
//   inside the input (possible only with large pads or dilation) gives -inf.
// - avg: the window [start, start + k) is first clipped to the padded input [-pad_begin,
//   in + pad_end); its size is the divisor with count_include_pad. It is then clipped to the input;
//   the number of elements left is the divisor without count_include_pad. A window with nothing
//   left gives 0.
// Fast path: OpenMP over output rows of all planes. Along a row, the outputs whose window lies
// wholly inside the input take a branch-free loop (one pass per kernel column, accumulating into
// the output row, which the compiler vectorizes); the few clipped outputs at the ends take the
// scalar path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/vec_lanes.h"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "ops.h"

namespace ev {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Below this many input reads a call runs on one thread: waking a team costs more.
constexpr int64_t kParallelWork = 1 << 15;

// NaN-propagating max in PyTorch's form: once the running value is NaN it stays NaN.
inline float max_nan(float m, float v) { return (v > m || v != v) ? v : m; }

// Clipped average window along one axis: [lo, hi) inside the input and the padded extent.
struct AvgSpan {
  int64_t lo, hi, padded;
};
inline AvgSpan avg_span(int64_t o, int64_t in, int64_t k, int64_t st, int64_t p0, int64_t p1) {
  const int64_t start = o * st - p0;
  const int64_t end = std::min(start + k, in + p1);
  const int64_t padded = end - std::max(start, -p0);
  return {std::max<int64_t>(start, 0), std::min(end, in), padded};
}

// First tap index >= 0 and one past the last tap inside [0, in) of a dilated window at `start`.
inline void max_taps(int64_t start, int64_t in, int64_t k, int64_t d, int64_t* t0, int64_t* t1) {
  *t0 = start < 0 ? (-start + d - 1) / d : 0;
  const int64_t last = in - 1 - start;  // taps t with start + t * d <= in - 1
  *t1 = last < 0 ? 0 : std::min(k, last / d + 1);
  if (*t1 < *t0) *t1 = *t0;
}

// Output columns [a, b) whose whole (dilated) window lies inside [0, in); a = b = out if none.
inline void interior(int64_t out, int64_t in, int64_t k, int64_t st, int64_t p0, int64_t d,
                     int64_t* a, int64_t* b) {
  const int64_t span = (k - 1) * d;
  *a = std::min(out, (p0 + st - 1) / st);
  const int64_t hi = in - 1 - span + p0;  // o * st <= hi
  *b = hi < 0 ? 0 : std::min(out, hi / st + 1);
  if (*b <= *a) *a = *b = out;  // no interior: the edge loop [0, a) covers every column
}

}  // namespace

void max_pool2d_ref(const Pool2dShape& s, const float* x, float* y) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t p = 0; p < s.n * s.c; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        float m = kNegInf;
        for (int64_t ky = 0; ky < s.kh; ++ky) {
          const int64_t iy = oy * s.stride_h - s.pad_t + ky * s.dil_h;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t kx = 0; kx < s.kw; ++kx) {
            const int64_t ix = ox * s.stride_w - s.pad_l + kx * s.dil_w;
            if (ix < 0 || ix >= s.w) continue;
            m = max_nan(m, x[(p * s.h + iy) * s.w + ix]);
          }
        }
        y[(p * oh + oy) * ow + ox] = m;
      }
}

void avg_pool2d_ref(const Pool2dShape& s, const float* x, float* y) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t p = 0; p < s.n * s.c; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const AvgSpan sy = avg_span(oy, s.h, s.kh, s.stride_h, s.pad_t, s.pad_b);
        const AvgSpan sx = avg_span(ox, s.w, s.kw, s.stride_w, s.pad_l, s.pad_r);
        float& out = y[(p * oh + oy) * ow + ox];
        if (sy.lo >= sy.hi || sx.lo >= sx.hi) {
          out = 0.f;
          continue;
        }
        double sum = 0.0;
        for (int64_t iy = sy.lo; iy < sy.hi; ++iy)
          for (int64_t ix = sx.lo; ix < sx.hi; ++ix) sum += x[(p * s.h + iy) * s.w + ix];
        const int64_t div = s.count_include_pad ? sy.padded * sx.padded
                                                : (sy.hi - sy.lo) * (sx.hi - sx.lo);
        out = static_cast<float>(sum / div);
      }
}

namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));

inline v8f max_nan8(v8f m, v8f v) { return (v > m || v != v) ? v : m; }

// The classic CNN pool: 2x2 windows at stride 2, no padding, no dilation, so every window lies inside
// the input. One pass per output row with the four taps in registers; 8 (or 4) outputs at a time read 16
// (8) adjacent floats of each input row and split them into even and odd columns. (The general loop
// below re-reads and re-writes the output row once per tap and pays its per-row setup for rows of
// 6-15 outputs: 60 us for the seed CNN's first pool vs about 10 here, on epyc2.)
bool is_plain_2x2(const Pool2dShape& s) {
  return s.kh == 2 && s.kw == 2 && s.stride_h == 2 && s.stride_w == 2 && s.dil_h == 1 && s.dil_w == 1 &&
         s.pad_t == 0 && s.pad_l == 0 && 2 * s.out_h() <= s.h && 2 * s.out_w() <= s.w;
}

typedef float v4f __attribute__((vector_size(16)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4), may_alias));
inline v4f max_nan4(v4f m, v4f v) { return (v > m || v != v) ? v : m; }

#if defined(__AVX512F__)
typedef float v16f __attribute__((vector_size(64)));
inline v16f max_nan16(v16f m, v16f v) { return (v > m || v != v) ? v : m; }
#endif

// One output row of ow outputs from input rows r0 and r1.
void max_pool2x2_row(const float* r0, const float* r1, float* yr, int64_t ow) {
#if defined(__AVX512F__)
  // 16 outputs from 32 floats of each row; a row of under 16 outputs reads and writes under masks (the seed CNN's
  // rows of 15 and 6 outputs took two or three 8-lane chunks each).
  const auto chunk16 = [&](int64_t ox, __mmask16 lo, __mmask16 hi, __mmask16 out) {
    const v16f a0 = (v16f)_mm512_maskz_loadu_ps(lo, r0 + 2 * ox);
    const v16f a1 = (v16f)_mm512_maskz_loadu_ps(hi, r0 + 2 * ox + 16);
    const v16f b0 = (v16f)_mm512_maskz_loadu_ps(lo, r1 + 2 * ox);
    const v16f b1 = (v16f)_mm512_maskz_loadu_ps(hi, r1 + 2 * ox + 16);
    v16f m = cpu::even_lanes(a0, a1);
    m = max_nan16(m, cpu::odd_lanes(a0, a1));
    m = max_nan16(m, cpu::even_lanes(b0, b1));
    m = max_nan16(m, cpu::odd_lanes(b0, b1));
    _mm512_mask_storeu_ps(yr + ox, out, (__m512)m);
  };
  if (ow < 16) {
    const int n = static_cast<int>(ow);  // 2n input columns: the first 16 in lo, the rest in hi
    chunk16(0, n >= 8 ? 0xffff : (1u << 2 * n) - 1, n > 8 ? (1u << (2 * n - 16)) - 1 : 0, (1u << n) - 1);
    return;
  }
  int64_t ox = 0;
  for (; ox + 16 <= ow; ox += 16) chunk16(ox, 0xffff, 0xffff, 0xffff);
  if (ox < ow) chunk16(ow - 16, 0xffff, 0xffff, 0xffff);  // overlapping the previous chunk
#else
  // Outputs [ox, ox + 8) from 16 adjacent floats of each row (columns 2 ox .. 2 ox + 15 < 2 ow <= w).
  const auto chunk8 = [&](int64_t ox) {
    const v8f a0 = *reinterpret_cast<const v8f_u*>(r0 + 2 * ox);
    const v8f a1 = *reinterpret_cast<const v8f_u*>(r0 + 2 * ox + 8);
    const v8f b0 = *reinterpret_cast<const v8f_u*>(r1 + 2 * ox);
    const v8f b1 = *reinterpret_cast<const v8f_u*>(r1 + 2 * ox + 8);
    v8f m = cpu::even_lanes(a0, a1);
    m = max_nan8(m, cpu::odd_lanes(a0, a1));
    m = max_nan8(m, cpu::even_lanes(b0, b1));
    m = max_nan8(m, cpu::odd_lanes(b0, b1));
    *reinterpret_cast<v8f_u*>(yr + ox) = m;
  };
  const auto chunk4 = [&](int64_t ox) {
    const v4f a0 = *reinterpret_cast<const v4f_u*>(r0 + 2 * ox);
    const v4f a1 = *reinterpret_cast<const v4f_u*>(r0 + 2 * ox + 4);
    const v4f b0 = *reinterpret_cast<const v4f_u*>(r1 + 2 * ox);
    const v4f b1 = *reinterpret_cast<const v4f_u*>(r1 + 2 * ox + 4);
    v4f m = __builtin_shufflevector(a0, a1, 0, 2, 4, 6);
    m = max_nan4(m, __builtin_shufflevector(a0, a1, 1, 3, 5, 7));
    m = max_nan4(m, __builtin_shufflevector(b0, b1, 0, 2, 4, 6));
    m = max_nan4(m, __builtin_shufflevector(b0, b1, 1, 3, 5, 7));
    *reinterpret_cast<v4f_u*>(yr + ox) = m;
  };
  // A row's last outputs come from one more chunk ending at ow, overlapping the previous one (the
  // outputs computed twice are the same). Scalar tails were most of the seed CNN's pools (rows of 15
  // and 6 outputs): in-model A/B on epyc2, its pools 1.87x and 1.38x faster, the model 0.90x the time
  // (1 thread), 0.86x at batch 8 (2 threads).
  if (ow >= 8) {
    int64_t ox = 0;
    for (; ox + 8 <= ow; ox += 8) chunk8(ox);
    if (ox < ow) chunk8(ow - 8);
  } else if (ow >= 4) {
    chunk4(0);
    chunk4(ow - 4);
  } else {
    for (int64_t ox = 0; ox < ow; ++ox)
      yr[ox] = max_nan(max_nan(max_nan(r0[2 * ox], r0[2 * ox + 1]), r1[2 * ox]), r1[2 * ox + 1]);
  }
#endif
}

// Planes [p0, p1) (input planes x_plane, output planes y_plane floats apart).
void max_pool2x2(const Pool2dShape& s, const float* x, float* y, int64_t p0, int64_t p1, int64_t y_plane,
                 int64_t x_plane) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t oy = 0; oy < oh; ++oy) {
      const float* r0 = x + p * x_plane + 2 * oy * s.w;
      max_pool2x2_row(r0, r0 + s.w, y + p * y_plane + oy * ow, ow);
    }
}

// Every other max pool, one output row at a time through a padded row buffer: the window's input rows are
// first reduced into T (vertical max, padding -inf), then T is split into stride_w phases (phase ph holds
// T[ph], T[ph + sw], ...), so a horizontal tap of consecutive outputs reads consecutive floats. The passes run
// on the widest vectors (vw, below). (Strided scalar taps took 1.1 ms for ResNet-18's 3x3 stride-2 pool on epyc2, about
// three times ONNX Runtime.) A window with no tap inside the input reads only padding: -inf.
struct PoolRowGeom {
  int64_t tlen;  // padded columns in T: everything an output reads, and the whole input row
  int64_t plen;  // floats per phase
};

PoolRowGeom pool_row_geom(const Pool2dShape& s) {
  const int64_t span = (s.out_w() - 1) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
  PoolRowGeom g;
  g.tlen = std::max(span, s.pad_l + s.w);
  g.plen = (g.tlen + s.stride_w - 1) / s.stride_w;
  return g;
}

// The widest vector: 16 lanes with AVX-512, else 8, then an 8-lane remainder (with 16 lanes alone, a 56-wide
// output row left 8 outputs to the scalar loop). The 3-row, 3-tap window is unrolled. 8-lane passes with a
// tap loop per vector ran ResNet-18's 3x3 stride-2 pool at 2.0-2.4x ONNX Runtime's time in-model (Xeon,
// 2 threads); now 1.4x. Alone, 64 x 112 x 112: 300-350 -> 190-215 us (ONNX Runtime's NCHW MaxPool 330-400).
#if defined(__AVX512F__)
typedef float vw __attribute__((vector_size(64)));
typedef float vw_u __attribute__((vector_size(64), aligned(4), may_alias));
#else
typedef v8f vw;
typedef v8f_u vw_u;
#endif
constexpr int kW = sizeof(vw) / sizeof(float);
inline vw max_nanw(vw m, vw v) { return (v > m || v != v) ? v : m; }

void max_pool_row(const Pool2dShape& s, const PoolRowGeom& g, const float* xp, int64_t oy, float* t,
                  float* phases, float* yr) {
  const int64_t ow = s.out_w(), w = s.w, sw = s.stride_w;
  const int64_t ystart = oy * s.stride_h - s.pad_t;
  int64_t ky0, ky1;
  max_taps(ystart, s.h, s.kh, s.dil_h, &ky0, &ky1);
  // Vertical pass into T[pad_l, pad_l + w); the rest of T stays -inf from the caller.
  float* tin = t + s.pad_l;
  if (ky0 == ky1) {
    std::fill(tin, tin + w, kNegInf);
  } else {
    const float* r0 = xp + (ystart + ky0 * s.dil_h) * w;  // the window's first row in the input
    const int64_t rstep = s.dil_h * w, nrows = ky1 - ky0;   // and the distance to the next one
    int64_t ix = 0;
    if (nrows == 3)  // the common 3-row window, unrolled
      for (; ix + kW <= w; ix += kW) {
        const vw a = *reinterpret_cast<const vw_u*>(r0 + ix);
        const vw b = *reinterpret_cast<const vw_u*>(r0 + rstep + ix);
        const vw c = *reinterpret_cast<const vw_u*>(r0 + 2 * rstep + ix);
        *reinterpret_cast<vw_u*>(tin + ix) = max_nanw(max_nanw(a, b), c);
      }
    for (; ix + kW <= w; ix += kW) {
      vw m = *reinterpret_cast<const vw_u*>(r0 + ix);
      for (int64_t r = 1; r < nrows; ++r) m = max_nanw(m, *reinterpret_cast<const vw_u*>(r0 + r * rstep + ix));
      *reinterpret_cast<vw_u*>(tin + ix) = m;
    }
    for (; kW > 8 && ix + 8 <= w; ix += 8) {  // an 8-lane remainder
      v8f m = *reinterpret_cast<const v8f_u*>(r0 + ix);
      for (int64_t r = 1; r < nrows; ++r) m = max_nan8(m, *reinterpret_cast<const v8f_u*>(r0 + r * rstep + ix));
      *reinterpret_cast<v8f_u*>(tin + ix) = m;
    }
    for (; ix < w; ++ix) {
      float m = r0[ix];
      for (int64_t r = 1; r < nrows; ++r) m = max_nan(m, r0[r * rstep + ix]);
      tin[ix] = m;
    }
  }
  // Phase split (stride 1 reads T itself).
  const float* ph = t;
  if (sw == 2) {
    float* ev = phases;
    float* od = phases + g.plen;
    int64_t i = 0;
    for (; 2 * i + 2 * kW <= g.tlen; i += kW) {
      const vw lo = *reinterpret_cast<const vw_u*>(t + 2 * i);
      const vw hi = *reinterpret_cast<const vw_u*>(t + 2 * i + kW);
      *reinterpret_cast<vw_u*>(ev + i) = cpu::even_lanes(lo, hi);
      *reinterpret_cast<vw_u*>(od + i) = cpu::odd_lanes(lo, hi);
    }
    for (; kW > 8 && 2 * i + 16 <= g.tlen; i += 8) {
      const v8f lo = *reinterpret_cast<const v8f_u*>(t + 2 * i);
      const v8f hi = *reinterpret_cast<const v8f_u*>(t + 2 * i + 8);
      *reinterpret_cast<v8f_u*>(ev + i) = cpu::even_lanes(lo, hi);
      *reinterpret_cast<v8f_u*>(od + i) = cpu::odd_lanes(lo, hi);
    }
    for (; i < g.plen; ++i) {
      ev[i] = t[2 * i];
      od[i] = 2 * i + 1 < g.tlen ? t[2 * i + 1] : kNegInf;
    }
    ph = phases;
  } else if (sw > 2) {
    for (int64_t q = 0; q < sw; ++q)
      for (int64_t i = 0; i < g.plen; ++i) phases[q * g.plen + i] = i * sw + q < g.tlen ? t[i * sw + q] : kNegInf;
    ph = phases;
  }
  // Horizontal pass: tap kx of output ox is phase (kx * dil_w) % sw, column ox + (kx * dil_w) / sw.
  const auto tap = [&](int64_t kx) {
    const int64_t d = kx * s.dil_w;
    return ph + (d % sw) * g.plen + d / sw;
  };
  int64_t ox = 0;
  if (s.kw == 3) {  // the common 3-tap window, unrolled
    const float *p0 = tap(0), *p1 = tap(1), *p2 = tap(2);
    for (; ox + kW <= ow; ox += kW) {
      const vw a = *reinterpret_cast<const vw_u*>(p0 + ox);
      const vw b = *reinterpret_cast<const vw_u*>(p1 + ox);
      const vw c = *reinterpret_cast<const vw_u*>(p2 + ox);
      *reinterpret_cast<vw_u*>(yr + ox) = max_nanw(max_nanw(a, b), c);
    }
  }
  for (; ox + kW <= ow; ox += kW) {
    vw m = *reinterpret_cast<const vw_u*>(tap(0) + ox);
    for (int64_t kx = 1; kx < s.kw; ++kx) m = max_nanw(m, *reinterpret_cast<const vw_u*>(tap(kx) + ox));
    *reinterpret_cast<vw_u*>(yr + ox) = m;
  }
  for (; kW > 8 && ox + 8 <= ow; ox += 8) {
    v8f m = *reinterpret_cast<const v8f_u*>(tap(0) + ox);
    for (int64_t kx = 1; kx < s.kw; ++kx) m = max_nan8(m, *reinterpret_cast<const v8f_u*>(tap(kx) + ox));
    *reinterpret_cast<v8f_u*>(yr + ox) = m;
  }
  for (; ox < ow; ++ox) {
    float m = tap(0)[ox];
    for (int64_t kx = 1; kx < s.kw; ++kx) m = max_nan(m, tap(kx)[ox]);
    yr[ox] = m;
  }
}

// max_pool_row's buffer T, then the phases (none at stride 1), on the calling thread: grown once per thread,
// not per call. T starts as -inf.
float* pool_row_buffer(const Pool2dShape& s, const PoolRowGeom& g) {
  thread_local std::vector<float> buf;
  const size_t need = static_cast<size_t>(g.tlen + (s.stride_w > 1 ? s.stride_w * g.plen : 0));
  if (buf.size() < need) buf.resize(need);
  std::fill(buf.begin(), buf.begin() + g.tlen, kNegInf);
  return buf.data();
}

}  // namespace

void max_pool2d_cpu(const Pool2dShape& s, const float* x, float* y) {
  const int64_t oh = s.out_h(), ow = s.out_w(), rows = s.n * s.c * oh;
  if (rows == 0 || ow == 0) return;
  if (is_plain_2x2(s)) {
    const int64_t planes = s.n * s.c;
#pragma omp parallel for schedule(static) if (planes * oh * ow * 4 > kParallelWork)
    for (int64_t p = 0; p < planes; ++p) max_pool2x2(s, x, y, p, p + 1, oh * ow, s.h * s.w);
    return;
  }
  const PoolRowGeom g = pool_row_geom(s);
#pragma omp parallel if (rows * ow * s.kh * s.kw > kParallelWork)
  {
    float* t = pool_row_buffer(s, g);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row)
      max_pool_row(s, g, x + row / oh * s.h * s.w, row % oh, t, t + g.tlen, y + row * ow);
  }
}

void max_pool2d_cpu_planes(const Pool2dShape& s, const float* x, int64_t x_plane, float* y, int64_t y_plane) {
  const int64_t oh = s.out_h(), ow = s.out_w(), planes = s.n * s.c;
  if (oh == 0 || ow == 0) return;
  if (is_plain_2x2(s)) return max_pool2x2(s, x, y, 0, planes, y_plane, x_plane);
  const PoolRowGeom g = pool_row_geom(s);
  float* t = pool_row_buffer(s, g);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      max_pool_row(s, g, x + p * x_plane, oy, t, t + g.tlen, y + p * y_plane + oy * ow);
}

void avg_pool2d_cpu(const Pool2dShape& s, const float* x, float* y) {
  const int64_t oh = s.out_h(), ow = s.out_w(), rows = s.n * s.c * oh;
  int64_t xa, xb;
  interior(ow, s.w, s.kw, s.stride_w, s.pad_l, 1, &xa, &xb);
#pragma omp parallel for schedule(static) if (rows * ow * s.kh * s.kw > kParallelWork)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t p = row / oh, oy = row % oh;
    const float* xp = x + p * s.h * s.w;
    float* yr = y + row * ow;
    const AvgSpan sy = avg_span(oy, s.h, s.kh, s.stride_h, s.pad_t, s.pad_b);
    if (sy.lo >= sy.hi) {
      std::fill(yr, yr + ow, 0.f);
      continue;
    }
    const int64_t vy = sy.hi - sy.lo;
    auto clipped = [&](int64_t ox) {
      const AvgSpan sx = avg_span(ox, s.w, s.kw, s.stride_w, s.pad_l, s.pad_r);
      if (sx.lo >= sx.hi) {
        yr[ox] = 0.f;
        return;
      }
      float sum = 0.f;
      for (int64_t iy = sy.lo; iy < sy.hi; ++iy)
        for (int64_t ix = sx.lo; ix < sx.hi; ++ix) sum += xp[iy * s.w + ix];
      const int64_t div = s.count_include_pad ? sy.padded * sx.padded : vy * (sx.hi - sx.lo);
      yr[ox] = sum / static_cast<float>(div);
    };
    for (int64_t ox = 0; ox < xa; ++ox) clipped(ox);
    for (int64_t ox = xb; ox < ow; ++ox) clipped(ox);
    if (xa < xb) {
      for (int64_t ox = xa; ox < xb; ++ox) yr[ox] = 0.f;
      for (int64_t iy = sy.lo; iy < sy.hi; ++iy) {
        const float* xr = xp + iy * s.w;
        for (int64_t kx = 0; kx < s.kw; ++kx) {
          const int64_t off = kx - s.pad_l, st = s.stride_w;
          for (int64_t ox = xa; ox < xb; ++ox) yr[ox] += xr[ox * st + off];
        }
      }
      const float inv = 1.f / static_cast<float>(s.count_include_pad ? sy.padded * s.kw : vy * s.kw);
      for (int64_t ox = xa; ox < xb; ++ox) yr[ox] *= inv;
    }
  }
}

void global_avg_pool_ref(const GlobalPoolShape& s, const float* x, float* y) {
  const int64_t hw = s.h * s.w;
  for (int64_t p = 0; p < s.n * s.c; ++p) {
    double sum = 0.0;
    for (int64_t i = 0; i < hw; ++i) sum += x[p * hw + i];
    y[p] = static_cast<float>(sum / hw);
  }
}

void global_max_pool_ref(const GlobalPoolShape& s, const float* x, float* y) {
  const int64_t hw = s.h * s.w;
  for (int64_t p = 0; p < s.n * s.c; ++p) {
    float m = kNegInf;
    for (int64_t i = 0; i < hw; ++i) m = max_nan(m, x[p * hw + i]);
    y[p] = m;
  }
}

namespace {
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
// 8 floats at any float-aligned address: a load through it is one unaligned vector load.
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
inline const v8f_u& load8(const float* p) { return *reinterpret_cast<const v8f_u*>(p); }
}  // namespace

void global_avg_pool_cpu(const GlobalPoolShape& s, const float* x, float* y) {
  const int64_t hw = s.h * s.w, planes = s.n * s.c;
#pragma omp parallel for schedule(static) if (planes * hw > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * hw;
    // Four independent vector sums: latency-bound FP adds otherwise, and closer to the reference's
    // double sum than one running float.
    v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
    int64_t i = 0;
    for (; i + 32 <= hw; i += 32) {
      a0 += load8(xp + i);
      a1 += load8(xp + i + 8);
      a2 += load8(xp + i + 16);
      a3 += load8(xp + i + 24);
    }
    for (; i + 8 <= hw; i += 8) a0 += load8(xp + i);
    const v8f a = (a0 + a1) + (a2 + a3);
    double sum = 0.0;
    for (int l = 0; l < 8; ++l) sum += a[l];
    for (; i < hw; ++i) sum += xp[i];
    y[p] = static_cast<float>(sum / hw);
  }
}

void global_max_pool_cpu(const GlobalPoolShape& s, const float* x, float* y) {
  const int64_t hw = s.h * s.w, planes = s.n * s.c;
#pragma omp parallel for schedule(static) if (planes * hw > kParallelWork)
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * hw;
    v8f m0 = v8f{} + kNegInf, m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= hw; i += 16) {
      const v8f v0 = load8(xp + i), v1 = load8(xp + i + 8);
      m0 = ((v0 > m0) | (v0 != v0)) ? v0 : m0;
      m1 = ((v1 > m1) | (v1 != v1)) ? v1 : m1;
    }
    float m = kNegInf;
    for (int l = 0; l < 8; ++l) m = max_nan(max_nan(m, m0[l]), m1[l]);
    for (; i < hw; ++i) m = max_nan(m, xp[i]);
    y[p] = m;
  }
}

}  // namespace ev
