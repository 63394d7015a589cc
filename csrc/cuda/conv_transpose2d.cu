// conv_transpose2d (the gradient of conv2d w.r.t. its input), gather form, with bias and the fused
// activation: x [n, c, h, w], w [c, k/groups, r, s], y [n, k, out_h, out_w].
//
// Output pixel (oh, ow) receives input pixel (ih, iw) through tap (kh, kw) when
//   oh = ih * stride_h - pad_t + kh * dil_h   (same for w),
// so each output gathers ih = (oh + pad_t - kh * dil_h) / stride_h over the taps where that is an
// exact, in-range division. No atomics, no workspace, deterministic.
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per output element (ow
// fastest, so a warp shares one output channel and its weights are broadcast reads).
// Later versions: decompose by the stride phase (oh % stride_h, ow % stride_w) into stride_h *
// stride_w dense convolutions that run on the implicit-GEMM conv2d kernel.
#include "cuda/common.cuh"

namespace ev {
namespace {

struct ConvTArgs {
  int total, c, h, w, k, r, s, out_h, out_w;
  int stride_h, stride_w, pad_t, pad_l, dil_h, dil_w;
  int cg, kg;  // input / output channels per group
};

template <typename T>
__global__ void conv_transpose2d_kernel(ConvTArgs a, const T* __restrict__ x,
                                        const T* __restrict__ w, const T* __restrict__ bias,
                                        T* __restrict__ y, Epilogue e) {
  for (int64_t t = cuda::grid_start(); t < a.total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int ow = i % a.out_w;
    int rem = i / a.out_w;
    const int oh = rem % a.out_h;
    rem /= a.out_h;
    const int co = rem % a.k;
    const int b = rem / a.k;
    const int g = co / a.kg, kk = co - g * a.kg;
    const T* xg = x + (b * a.c + g * a.cg) * a.h * a.w;
    // Input channel j of group g, tap (kh, kw): w[((g*cg + j)*kg + kk)*r*s + kh*s + kw].
    const T* wg = w + (g * a.cg * a.kg + kk) * a.r * a.s;
    float acc = 0.f;
    for (int kh = 0; kh < a.r; ++kh) {
      const int th = oh + a.pad_t - kh * a.dil_h;
      if (th < 0 || th % a.stride_h != 0) continue;
      const int ih = th / a.stride_h;
      if (ih >= a.h) continue;
      for (int kw = 0; kw < a.s; ++kw) {
        const int tw = ow + a.pad_l - kw * a.dil_w;
        if (tw < 0 || tw % a.stride_w != 0) continue;
        const int iw = tw / a.stride_w;
        if (iw >= a.w) continue;
        const T* xp = xg + ih * a.w + iw;
        const T* wp = wg + kh * a.s + kw;
        for (int ci = 0; ci < a.cg; ++ci)
          acc += cuda::ld(xp + ci * a.h * a.w) * cuda::ld(wp + ci * a.kg * a.r * a.s);
      }
    }
    const float bv = bias ? cuda::ld(bias + co) : 0.f;
    cuda::st(y + i, apply_epilogue(acc, bv, 0.f, e));
  }
}

}  // namespace

void conv_transpose2d_cuda(const ConvTranspose2dShape& s, DType dt, const void* x, const void* w,
                           const void* bias, void* y, const Epilogue& e, Stream stream) {
  ConvTArgs a;
  a.total = cuda::to_int(s.n * s.k * s.out_h() * s.out_w(), "conv_transpose2d output elements");
  cuda::to_int(s.n * s.c * s.h * s.w, "conv_transpose2d input elements");
  cuda::to_int(s.c * (s.k / s.groups) * s.r * s.s, "conv_transpose2d weight elements");
  // oh + pad_t and the tap offsets kh * dil_h stay in int.
  cuda::to_int(s.out_h() + s.pad_t + s.dil_h * s.r, "conv_transpose2d padded height");
  cuda::to_int(s.out_w() + s.pad_l + s.dil_w * s.s, "conv_transpose2d padded width");
  if (a.total <= 0) return;
  a.c = static_cast<int>(s.c);
  a.h = static_cast<int>(s.h);
  a.w = static_cast<int>(s.w);
  a.k = static_cast<int>(s.k);
  a.r = static_cast<int>(s.r);
  a.s = static_cast<int>(s.s);
  a.out_h = static_cast<int>(s.out_h());
  a.out_w = static_cast<int>(s.out_w());
  a.stride_h = cuda::to_int(s.stride_h, "conv_transpose2d stride");
  a.stride_w = cuda::to_int(s.stride_w, "conv_transpose2d stride");
  a.pad_t = static_cast<int>(s.pad_t);
  a.pad_l = static_cast<int>(s.pad_l);
  a.dil_h = static_cast<int>(s.dil_h);
  a.dil_w = static_cast<int>(s.dil_w);
  a.cg = static_cast<int>(s.c / s.groups);
  a.kg = static_cast<int>(s.k / s.groups);
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "conv_transpose2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_transpose2d_kernel<T><<<cuda::blocks_for(a.total), cuda::kBlock, 0, st>>>(
        a, static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(bias),
        static_cast<T*>(y), e);
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
