// The one op table of edgevision: every kernel's shape struct and signature, CPU and CUDA.
//
// Conventions (they hold for every op below):
// - Tensors are dense, contiguous, NCHW (or row-major for gemm), passed as raw pointers. Shapes come
//   in a small struct whose fields the caller has already validated (bindings.cpp does that); the
//   struct's methods compute output sizes so there is one formula per op, shared by the bindings, the
//   kernels and the runtime planner.
// - <op>_ref : plain scalar loops, single thread, FP32. Kept forever as the definition of the op.
//   <op>_cpu : the fast CPU path (OpenMP threads + portable SIMD). Same arguments as _ref.
//   <op>_cuda: the CUDA path. FP32, or FP16 storage with FP32 accumulation (DType). Pointers are
//              device pointers; `stream` is a cudaStream_t passed as void* so this header needs no
//              CUDA include. Only declared when built with CUDA (EV_WITH_CUDA).
// - Optional inputs (bias, residual) are nullptr when absent.
// - Ops that need scratch memory declare <op>_{cpu,cuda}_workspace(shape) in bytes; the caller passes
//   a buffer at least that large (no allocation inside kernels, so a compiled plan can run with none).
// - CUDA kernels may index with 32-bit integers: the bindings reject CUDA tensors of 2^31 or more
//   elements.
// - This header knows nothing of PyTorch or Python.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ev {

using Stream = void*;  // cudaStream_t

enum class DType : int { F32 = 0, F16 = 1, U8 = 2 };

// ---------------------------------------------------------------------------------------------
// Fused epilogue: y = act(acc + bias + residual), or act(acc + bias) + residual when
// residual_after_act. acc is the conv/gemm accumulator; bias is per output channel.
// ---------------------------------------------------------------------------------------------
enum class Act : int {
  None = 0,
  ReLU,
  LeakyReLU,    // x >= 0 ? x : alpha * x
  Clip,         // min(max(x, alpha), beta); ReLU6 is Clip(0, 6)
  Sigmoid,
  Tanh,
  SiLU,         // x * sigmoid(x)
  HardSwish,    // x * relu6(x + 3) / 6
  GELU,         // exact: 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default
  HardSigmoid,  // max(0, min(1, alpha * x + beta)); ONNX defaults alpha = 0.2, beta = 0.5
};

struct Epilogue {
  Act act = Act::None;
  float alpha = 0.f;
  float beta = 0.f;
  bool residual_after_act = false;
};

// ---------------------------------------------------------------------------------------------
// conv2d: x [n, c, h, w], w [k, c/groups, r, s], bias [k], residual and y [n, k, out_h, out_w].
// Depthwise is groups == c (k == c * multiplier).
// ---------------------------------------------------------------------------------------------
struct Conv2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input
  int64_t k = 1, r = 1, s = 1;          // output channels, kernel height, kernel width
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  // 0 when the dilated kernel is larger than the padded input (C++ division truncates toward zero,
  // so the span must be checked before dividing).
  int64_t out_h() const { return out_size(h, r, stride_h, pad_t + pad_b, dil_h); }
  int64_t out_w() const { return out_size(w, s, stride_w, pad_l + pad_r, dil_w); }
  static int64_t out_size(int64_t in, int64_t k, int64_t st, int64_t pads, int64_t d) {
    const int64_t span = in + pads - d * (k - 1) - 1;
    return span < 0 ? 0 : span / st + 1;
  }
  double flops() const { return 2.0 * n * k * out_h() * out_w() * (c / groups) * r * s; }
};
void conv2d_ref(const Conv2dShape&, const float* x, const float* w, const float* bias,
                const float* residual, float* y, const Epilogue&);
// The CPU workspace of conv2d and gemm depends on omp_get_max_threads() at the time of the query:
// call the kernel with the same thread count (or fewer) as when the size was asked for.
// The GEMM and Winograd paths read the weights in their own layout (sgemm.h's packed A; Winograd's
// transformed filters, packed the same way): conv2d_cpu_pack makes it, into conv2d_cpu_packed_floats
// floats (0: the path reads w as given), once when a plan is built. Without `packed`, conv2d_cpu packs
// into its workspace on every call, which then needs conv2d_cpu_workspace(s, false) bytes.
int64_t conv2d_cpu_packed_floats(const Conv2dShape&);
void conv2d_cpu_pack(const Conv2dShape&, const float* w, float* packed);
size_t conv2d_cpu_workspace(const Conv2dShape&, bool prepacked = false);
void conv2d_cpu(const Conv2dShape&, const float* x, const float* w, const float* bias,
                const float* residual, float* y, const Epilogue&, void* workspace,
                const float* packed = nullptr);
// conv2d, its epilogue (and residual, of the conv's output shape), then the max pool `pool` over the conv output
// (pool.n, c, h, w are the conv output's; any kernel, stride and padding under the kernel, no dilation, floor
// rounding): the classic CNN's conv -> relu -> 2x2 pool, and ResNet's stem conv -> 3x3 stride-2 pool.
// y: [n, k, pool.out_h(), pool.out_w()]. Weights packed as for conv2d_cpu.
struct Pool2dShape;
size_t conv2d_max_pool_cpu_workspace(const Conv2dShape&, const Pool2dShape& pool, bool residual,
                                      bool prepacked = false);
void conv2d_max_pool_cpu(const Conv2dShape&, const Pool2dShape& pool, const float* x, const float* w,
                         const float* bias, const float* residual, float* y, const Epilogue&, void* workspace,
                         const float* packed = nullptr);

// conv2d_dw_pw: a depthwise conv2d (dw: groups == c) whose output only a 1x1 conv2d reads (pw: stride
// 1, no padding, one group, pw.c == dw.k, over dw's output map), optionally preceded by the 1x1 conv2d
// that makes its input (ex, when `expand`: stride 1, no padding, ex.k == dw.c, same map): y =
// conv2d(pw, conv2d(dw, [conv2d(ex, x, w_ex, b_ex, ex_epi)], w_dw, b_dw, dw_epi), w_pw, b_pw,
// residual, e_pw) in one call. A 3x3 depthwise at stride 1 or 2 with one output channel per input
// channel and rows of 32 or more outputs (conv2d.cpp's dw_pw_band) runs band by band so nothing
// between the convs leaves the cache; with AVX-512, a block with an expand conv, expanded channels a
// multiple of 16, a 3x3 or 5x5 depthwise and outputs at most 28 wide runs on 16-channel blocks split
// over the threads (cpu/dw_pw_blocked.h); any other runs the convs in turn, through the workspace.
// The weights are packed together (conv2d_dw_pw_cpu_pack: the 1x1 convs', and on the blocked path the
// depthwise's too; packed nullptr: into the workspace).
struct DwPwShape {
  Conv2dShape dw, pw;
  Epilogue dw_epi;
  bool expand = false;
  Conv2dShape ex;
  Epilogue ex_epi;
};
int64_t conv2d_dw_pw_cpu_packed_floats(const DwPwShape&);
void conv2d_dw_pw_cpu_pack(const DwPwShape&, const float* w_pw, const float* w_ex, const float* w_dw,
                           float* packed);
bool conv2d_dw_pw_cpu_packs_depthwise(const DwPwShape&);  // reads w_dw from `packed`, not as given
size_t conv2d_dw_pw_cpu_workspace(const DwPwShape&, bool prepacked = false);
void conv2d_dw_pw_cpu(const DwPwShape&, const float* x, const float* w_ex, const float* b_ex,
                      const float* w_dw, const float* b_dw, const float* w_pw, const float* b_pw,
                      const float* residual, float* y, const Epilogue& e_pw, void* workspace,
                      const float* packed = nullptr);

// ---------------------------------------------------------------------------------------------
// conv_transpose2d: x [n, c, h, w], w [c, k/groups, r, s] (PyTorch/ONNX layout), bias [k],
// y [n, k, out_h, out_w]. The gradient of conv2d with the same stride/pad/dilation/groups.
// ---------------------------------------------------------------------------------------------
struct ConvTranspose2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t k = 1, r = 1, s = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  int64_t out_pad_h = 0, out_pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t out_h() const { return (h - 1) * stride_h - pad_t - pad_b + dil_h * (r - 1) + out_pad_h + 1; }
  int64_t out_w() const { return (w - 1) * stride_w - pad_l - pad_r + dil_w * (s - 1) + out_pad_w + 1; }
  double flops() const { return 2.0 * n * c * h * w * (k / groups) * r * s; }
};
void conv_transpose2d_ref(const ConvTranspose2dShape&, const float* x, const float* w,
                          const float* bias, float* y, const Epilogue&);
// One group, no dilation, input wider than 1x1: with weights packed once (conv_transpose2d_cpu_pack into
// conv_transpose2d_cpu_packed_floats floats; 0: no packed path), the GEMM is conv2d's pointwise one (c -> k r s
// channels, AVX-512 tiles) and col2im scatters its output; without, an 8-lane GEMM over the weights as given.
int64_t conv_transpose2d_cpu_packed_floats(const ConvTranspose2dShape&);
void conv_transpose2d_cpu_pack(const ConvTranspose2dShape&, const float* w, float* packed);
size_t conv_transpose2d_cpu_workspace(const ConvTranspose2dShape&, bool prepacked = false);
void conv_transpose2d_cpu(const ConvTranspose2dShape&, const float* x, const float* w,
                          const float* bias, float* y, const Epilogue&, void* workspace,
                          const float* packed = nullptr);

// ---------------------------------------------------------------------------------------------
// Pooling: x [n, c, h, w] -> y [n, c, out_h, out_w]. PyTorch and ONNX semantics: with ceil_mode a
// last window that would start inside the right/bottom padding is dropped. Average pooling divides
// by the window clipped to the padded input when count_include_pad, else by the valid elements.
// Dilation applies to max pooling only (avg requires dil == 1).
// ---------------------------------------------------------------------------------------------
struct Pool2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_t = 0, pad_l = 0, pad_b = 0, pad_r = 0;
  int64_t dil_h = 1, dil_w = 1;
  bool ceil_mode = false;
  bool count_include_pad = false;
  int64_t out_h() const { return out_size(h, kh, stride_h, pad_t, pad_b, dil_h); }
  int64_t out_w() const { return out_size(w, kw, stride_w, pad_l, pad_r, dil_w); }
  int64_t out_size(int64_t in, int64_t k, int64_t st, int64_t p0, int64_t p1, int64_t d) const {
    const int64_t span = in + p0 + p1 - d * (k - 1) - 1;
    if (span < 0) return 0;  // the dilated kernel is larger than the padded input (not -1 / st == 0)
    int64_t out = (ceil_mode ? (span + st - 1) / st : span / st) + 1;
    if (ceil_mode && (out - 1) * st >= in + p0) --out;
    return out;
  }
};
void max_pool2d_ref(const Pool2dShape&, const float* x, float* y);
void max_pool2d_cpu(const Pool2dShape&, const float* x, float* y);
// Every plane of s (s.n * s.c planes of s.h x s.w floats, x_plane floats apart) into y, whose planes are y_plane
// floats apart, on the calling thread: for a caller that pools rows it computed itself.
void max_pool2d_cpu_planes(const Pool2dShape& s, const float* x, int64_t x_plane, float* y, int64_t y_plane);
void avg_pool2d_ref(const Pool2dShape&, const float* x, float* y);
void avg_pool2d_cpu(const Pool2dShape&, const float* x, float* y);

// Global pooling: x [n, c, h, w] -> y [n, c] (the caller views it as [n, c, 1, 1]).
struct GlobalPoolShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
};
void global_avg_pool_ref(const GlobalPoolShape&, const float* x, float* y);
void global_avg_pool_cpu(const GlobalPoolShape&, const float* x, float* y);
void global_max_pool_ref(const GlobalPoolShape&, const float* x, float* y);
void global_max_pool_cpu(const GlobalPoolShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// gemm: y[m, n] = epilogue(alpha * op(a) @ op(b) + bias[n] + residual[m, n]).
// a is [m, k] (or [k, m] when trans_a), b is [k, n] (or [n, k] when trans_b). linear(x, W, b) is
// trans_b = true with W [out, in] as PyTorch stores it.
// ---------------------------------------------------------------------------------------------
struct GemmShape {
  int64_t m = 1, n = 1, k = 1;
  bool trans_a = false, trans_b = false;
  float alpha = 1.f;
  double flops() const { return 2.0 * m * n * k; }
};
void gemm_ref(const GemmShape&, const float* a, const float* b, const float* bias,
              const float* residual, float* y, const Epilogue&);
size_t gemm_cpu_workspace(const GemmShape&);
// Above 4 rows gemm_cpu packs b into column panels on every call. A constant b (a linear layer's weights at
// batch 5 and up) can be packed once instead: gemm_cpu_pack_b writes gemm_cpu_packed_b_floats(s) floats
// (0: this shape reads b as given) that gemm_cpu then reads as `packed_b`, b itself unused.
int64_t gemm_cpu_packed_b_floats(const GemmShape&);
void gemm_cpu_pack_b(const GemmShape&, const float* b, float* packed);
void gemm_cpu(const GemmShape&, const float* a, const float* b, const float* bias,
              const float* residual, float* y, const Epilogue&, void* workspace,
              const float* packed_b = nullptr);
// This machine's FP32 FMA peak in GFLOP/s with `threads` OpenMP threads (<= 0: all), measured by a
// short microbenchmark (~0.1 s); the op benchmark reports kernels as a fraction of it.
double cpu_peak_gflops(int threads);

// ---------------------------------------------------------------------------------------------
// pixel_shuffle / DepthToSpace: x [n, c * b * b, h, w] -> y [n, c, h * b, w * b].
// CRD is PyTorch's pixel_shuffle (channel index c * b * b + i * b + j); DCR is ONNX's default
// DepthToSpace (channel index (i * b + j) * c + c).
// ---------------------------------------------------------------------------------------------
enum class ShuffleMode : int { CRD = 0, DCR = 1 };
struct PixelShuffleShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // c is the OUTPUT channel count
  int64_t block = 1;
  ShuffleMode mode = ShuffleMode::CRD;
  // A crop of the shuffled map (CPU only; the sub-pixel form of a padded transposed conv): the output is rows
  // [top, top + crop_h) and columns [left, left + crop_w) of it. crop_h = crop_w = 0: the whole map.
  int64_t top = 0, left = 0, crop_h = 0, crop_w = 0;
  int64_t out_h() const { return crop_h ? crop_h : h * block; }
  int64_t out_w() const { return crop_w ? crop_w : w * block; }
};
void pixel_shuffle_ref(const PixelShuffleShape&, const float* x, float* y);
void pixel_shuffle_cpu(const PixelShuffleShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// resize: x [n, c, h, w] -> y [n, c, out_h, out_w], nearest or bilinear (no antialias).
// The source coordinate of output pixel o is, with scale = out/in (or the explicit scale_h/scale_w
// when > 0, as ONNX `scales` and PyTorch `scale_factor` give it):
//   HalfPixel         (o + 0.5) / scale - 0.5            (torch align_corners=False, ONNX default)
//   PytorchHalfPixel  as HalfPixel, but 0 when the output length is 1
//   AlignCorners      o * (in - 1) / (out - 1), 0 when out == 1
//   Asymmetric        o / scale                           (torch 'nearest')
// Nearest rounds that coordinate with NearestMode, exactly at ties (a coordinate within 1e-9 of a
// rounding boundary counts as on it, so float error never picks the other neighbour), then clamps
// the index to [0, in - 1]; bilinear clamps the coordinate to [0, in - 1].
// ---------------------------------------------------------------------------------------------
enum class ResizeMode : int { Nearest = 0, Bilinear = 1 };
enum class CoordMode : int { HalfPixel = 0, PytorchHalfPixel = 1, AlignCorners = 2, Asymmetric = 3 };
enum class NearestMode : int { RoundPreferFloor = 0, RoundPreferCeil = 1, Floor = 2, Ceil = 3 };
struct ResizeShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t out_h = 1, out_w = 1;
  ResizeMode mode = ResizeMode::Nearest;
  CoordMode coord = CoordMode::HalfPixel;
  NearestMode nearest = NearestMode::RoundPreferFloor;
  float scale_h = 0.f, scale_w = 0.f;  // <= 0: out / in
};
void resize_ref(const ResizeShape&, const float* x, float* y);
void resize_cpu(const ResizeShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// softmax over one axis of a tensor viewed as [outer, dim, inner] (numerically stable: max first).
// ---------------------------------------------------------------------------------------------
struct SoftmaxShape {
  int64_t outer = 1, dim = 1, inner = 1;
  bool log = false;  // log_softmax
};
void softmax_ref(const SoftmaxShape&, const float* x, float* y);
void softmax_cpu(const SoftmaxShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// Broadcasting elementwise binary op: y[i] = a[i] op b[i] over an output of up to kMaxDims dims.
// a_strides / b_strides are in elements, 0 along broadcast dimensions (numpy rules applied by the
// caller). An optional activation (Epilogue, residual ignored) is applied to the result.
// ---------------------------------------------------------------------------------------------
enum class BinaryOp : int { Add = 0, Sub = 1, Mul = 2, Div = 3 };
constexpr int kMaxDims = 8;
struct BinaryShape {
  int ndim = 1;
  int64_t shape[kMaxDims] = {1};
  int64_t a_strides[kMaxDims] = {0};
  int64_t b_strides[kMaxDims] = {0};
  BinaryOp op = BinaryOp::Add;
  int64_t numel() const {
    int64_t t = 1;
    for (int i = 0; i < ndim; ++i) t *= shape[i];
    return t;
  }
};
void binary_ref(const BinaryShape&, const float* a, const float* b, float* y, const Epilogue&);
void binary_cpu(const BinaryShape&, const float* a, const float* b, float* y, const Epilogue&);

// Standalone activation: y = act(x) elementwise (x == y allowed: in place).
void activation_ref(int64_t numel, const float* x, float* y, const Epilogue&);
void activation_cpu(int64_t numel, const float* x, float* y, const Epilogue&);

// ---------------------------------------------------------------------------------------------
// batch_norm, inference form: y = (x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c], then an
// optional activation. x, y [n, c, h, w] (h * w may be 1 for [n, c]).
// ---------------------------------------------------------------------------------------------
struct BatchNormShape {
  int64_t n = 1, c = 1, hw = 1;
  float eps = 1e-5f;
};
void batch_norm_ref(const BatchNormShape&, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* var, float* y, const Epilogue&);
void batch_norm_cpu(const BatchNormShape&, const float* x, const float* gamma, const float* beta,
                    const float* mean, const float* var, float* y, const Epilogue&);

// ---------------------------------------------------------------------------------------------
// concat along one axis: every input viewed as [outer, sizes[i], inner]; y is [outer, sum, inner].
// ---------------------------------------------------------------------------------------------
struct ConcatShape {
  int64_t outer = 1, inner = 1;
  int count = 0;              // number of inputs
  const int64_t* sizes = nullptr;  // count entries: each input's extent along the axis
};
void concat_ref(const ConcatShape&, const float* const* xs, float* y);
void concat_cpu(const ConcatShape&, const float* const* xs, float* y);

// ---------------------------------------------------------------------------------------------
// strided_copy: y (dense, row-major, `shape`) [i0..i{nd-1}] = x[x_offset + sum_d i_d * x_strides[d]].
// Strides are in elements and may be 0 (broadcast: Expand) or negative (Slice with negative steps);
// the caller guarantees that every index read lies inside x. Transpose, Slice, Split and Expand are
// all this op. Here and in pad, lrn and reduce below, x and y must not overlap.
// ---------------------------------------------------------------------------------------------
struct StridedCopyShape {
  int ndim = 1;
  int64_t shape[kMaxDims] = {1};
  int64_t x_strides[kMaxDims] = {0};
  int64_t x_offset = 0;
  int64_t numel() const {
    int64_t t = 1;
    for (int i = 0; i < ndim; ++i) t *= shape[i];
    return t;
  }
  // The same copy with size-1 dims dropped and neighbours merged where x is contiguous across them
  // (the output always is), so a channel shuffle [n, g, c/g, h, w] -> [n, c/g, g, h, w] reaches a
  // kernel as rows of h * w contiguous elements. At least one dim.
  StridedCopyShape coalesced() const {
    StridedCopyShape c;
    c.ndim = 0;
    c.x_offset = x_offset;
    for (int i = 0; i < ndim; ++i) {
      if (shape[i] == 1) continue;
      if (c.ndim > 0 && c.x_strides[c.ndim - 1] == x_strides[i] * shape[i]) {
        c.shape[c.ndim - 1] *= shape[i];
        c.x_strides[c.ndim - 1] = x_strides[i];
        continue;
      }
      c.shape[c.ndim] = shape[i];
      c.x_strides[c.ndim] = x_strides[i];
      ++c.ndim;
    }
    if (c.ndim == 0) {
      c.ndim = 1;
      c.shape[0] = 1;
      c.x_strides[0] = 0;
    }
    return c;
  }
};
void strided_copy_ref(const StridedCopyShape&, const float* x, float* y);
void strided_copy_cpu(const StridedCopyShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// pad: x (dense, `shape`) -> y of out_dim(d) = shape[d] + pad_begin[d] + pad_end[d] (pads >= 0; ONNX
// negative pads are lowered to a Slice by the importer). Constant fills `value`; Reflect mirrors
// without repeating the edge (numpy 'reflect', requires pads < shape[d]); Edge repeats the edge.
// ---------------------------------------------------------------------------------------------
enum class PadMode : int { Constant = 0, Reflect = 1, Edge = 2 };
struct PadShape {
  int ndim = 1;
  int64_t shape[kMaxDims] = {1};
  int64_t pad_begin[kMaxDims] = {0};
  int64_t pad_end[kMaxDims] = {0};
  PadMode mode = PadMode::Constant;
  float value = 0.f;
  int64_t out_dim(int d) const { return shape[d] + pad_begin[d] + pad_end[d]; }
};
void pad_ref(const PadShape&, const float* x, float* y);
void pad_cpu(const PadShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// lrn (ONNX LRN, across channels): x, y [n, c, hw];
//   y = x / (bias + alpha / size * sum_{c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]} x[c']^2)^beta
// (channels outside [0, c) contribute nothing). For odd sizes this is torch's local_response_norm;
// for even sizes the window leans the other way (torch: [c - size/2, c + size/2 - 1]).
// ---------------------------------------------------------------------------------------------
struct LrnShape {
  int64_t n = 1, c = 1, hw = 1;
  int64_t size = 1;
  float alpha = 1e-4f, beta = 0.75f, bias = 1.f;
};
void lrn_ref(const LrnShape&, const float* x, float* y);
void lrn_cpu(const LrnShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// reduce over the middle axis of x viewed as [outer, dim, inner] -> y [outer, inner]. Max and Min
// propagate NaN (like torch.amax and numpy.max).
// ---------------------------------------------------------------------------------------------
enum class ReduceOp : int { Mean = 0, Sum = 1, Max = 2, Min = 3 };
struct ReduceShape {
  int64_t outer = 1, dim = 1, inner = 1;
  ReduceOp op = ReduceOp::Mean;
};
void reduce_ref(const ReduceShape&, const float* x, float* y);
void reduce_cpu(const ReduceShape&, const float* x, float* y);

// ---------------------------------------------------------------------------------------------
// preprocess: one uint8 HWC camera frame (3 channels, BGR or RGB, rows `row_bytes` apart so ROIs and
// padded rows work) -> float [3, out_h, out_w] (NCHW for one image; write into a batch by offsetting
// dst). In one pass: resize to resize_h x resize_w (bilinear half-pixel like cv2.INTER_LINEAR without
// its fixed-point rounding, i.e. torch bilinear with align_corners=False; or nearest, which picks
// source pixel floor((o + 0.5) * in / out) like torch 'nearest-exact' and cv2.INTER_NEAREST_EXACT,
// not cv2.INTER_NEAREST's floor(o * in / out)), centre crop to out_h x out_w, then
//   dst[c] = (src[c'] * scale - mean[c]) / std[c]
// where c' swaps R and B when swap_rb (a BGR frame to an RGB model). resize_h/w == 0 means no resize
// (then out <= in and the crop is taken from the frame itself).
// ---------------------------------------------------------------------------------------------
enum class Interp : int { Nearest = 0, Bilinear = 1 };
struct PreprocessShape {
  int64_t in_h = 1, in_w = 1, row_bytes = 3;
  int64_t resize_h = 0, resize_w = 0;
  int64_t out_h = 1, out_w = 1;
  bool swap_rb = false;
  Interp interp = Interp::Bilinear;
  float scale = 1.f / 255.f;
  float mean[3] = {0.f, 0.f, 0.f};
  float std[3] = {1.f, 1.f, 1.f};
  int64_t eff_h() const { return resize_h > 0 ? resize_h : in_h; }
  int64_t eff_w() const { return resize_w > 0 ? resize_w : in_w; }
  int64_t crop_top() const { return (eff_h() - out_h) / 2; }
  int64_t crop_left() const { return (eff_w() - out_w) / 2; }
};
void preprocess_ref(const PreprocessShape&, const uint8_t* src, float* dst);
void preprocess_cpu(const PreprocessShape&, const uint8_t* src, float* dst);

// postprocess_image: float [c, h, w] (c = 1 or 3) -> uint8 [h, w, c]:
//   dst = clamp(round((src * std[c] + mean[c]) * scale), 0, 255), R and B swapped when swap_rb
// (mean/std are indexed by the model's channel c). round is half to even (numpy.rint, torch.round,
// cv2's saturate_cast); NaN gives 0. Evaluated in double so the bytes are exactly reproducible.
// For a Tanh generator use mean 0.5, std 0.5, scale 255.
struct PostprocessShape {
  int64_t c = 3, h = 1, w = 1;
  bool swap_rb = false;
  float scale = 255.f;
  float mean[3] = {0.f, 0.f, 0.f};
  float std[3] = {1.f, 1.f, 1.f};
};
void postprocess_image_ref(const PostprocessShape&, const float* src, uint8_t* dst);
void postprocess_image_cpu(const PostprocessShape&, const float* src, uint8_t* dst);

// ---------------------------------------------------------------------------------------------
// CUDA versions. `dt` is the dtype of every float tensor of the call (F32, or F16 storage with FP32
// accumulation). Pointers are device pointers on the current device.
// ---------------------------------------------------------------------------------------------
#ifdef EV_WITH_CUDA
size_t conv2d_cuda_workspace(const Conv2dShape&, DType dt);
void conv2d_cuda(const Conv2dShape&, DType dt, const void* x, const void* w, const void* bias,
                 const void* residual, void* y, const Epilogue&, void* workspace, Stream);
void conv_transpose2d_cuda(const ConvTranspose2dShape&, DType dt, const void* x, const void* w,
                           const void* bias, void* y, const Epilogue&, Stream);
void max_pool2d_cuda(const Pool2dShape&, DType dt, const void* x, void* y, Stream);
void avg_pool2d_cuda(const Pool2dShape&, DType dt, const void* x, void* y, Stream);
void global_avg_pool_cuda(const GlobalPoolShape&, DType dt, const void* x, void* y, Stream);
void global_max_pool_cuda(const GlobalPoolShape&, DType dt, const void* x, void* y, Stream);
void gemm_cuda(const GemmShape&, DType dt, const void* a, const void* b, const void* bias,
               const void* residual, void* y, const Epilogue&, Stream);
void pixel_shuffle_cuda(const PixelShuffleShape&, DType dt, const void* x, void* y, Stream);
void resize_cuda(const ResizeShape&, DType dt, const void* x, void* y, Stream);
void softmax_cuda(const SoftmaxShape&, DType dt, const void* x, void* y, Stream);
void binary_cuda(const BinaryShape&, DType dt, const void* a, const void* b, void* y,
                 const Epilogue&, Stream);
void activation_cuda(int64_t numel, DType dt, const void* x, void* y, const Epilogue&, Stream);
void batch_norm_cuda(const BatchNormShape&, DType dt, const void* x, const void* gamma,
                     const void* beta, const void* mean, const void* var, void* y,
                     const Epilogue&, Stream);
// Inputs may have different sizes along the axis; xs is a HOST array of device pointers.
void concat_cuda(const ConcatShape&, DType dt, const void* const* xs, void* y, Stream);
void strided_copy_cuda(const StridedCopyShape&, DType dt, const void* x, void* y, Stream);
void pad_cuda(const PadShape&, DType dt, const void* x, void* y, Stream);
void lrn_cuda(const LrnShape&, DType dt, const void* x, void* y, Stream);
void reduce_cuda(const ReduceShape&, DType dt, const void* x, void* y, Stream);
// src is uint8 on the device; dst is `dt` (F16 halves the bytes the model's first layer reads).
void preprocess_cuda(const PreprocessShape&, const uint8_t* src, DType dt, void* dst, Stream);
void postprocess_image_cuda(const PostprocessShape&, DType dt, const void* src, uint8_t* dst,
                            Stream);

// Device queries for info(); they never throw when no driver or GPU is present.
struct CudaDeviceInfo {
  char name[256];
  int major, minor;
  int multiprocessors;
  size_t total_memory;
};
int cuda_runtime_version();
int cuda_driver_version();               // 0 when no driver is installed
int cuda_device_count(const char** why);  // 0 (and a reason) when none can be used
bool cuda_device_info(int index, CudaDeviceInfo* out);
void cuda_set_device(int index);
int cuda_current_device();
#endif

}  // namespace ev
