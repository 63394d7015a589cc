// preprocess (uint8 HWC camera frame -> normalised float/half CHW: resize, centre crop, colour swap,
// scale, mean, std, in one pass) and postprocess_image (float/half CHW -> uint8 HWC).
//
// The arithmetic is the CPU reference's (csrc/cpu/preprocess.cpp), step for step:
//   bilinear: scale = in / eff in float, source = scale * (r + 0.5) - 0.5 (multiply and add
//     rounded separately: __fmul_rn / __fadd_rn keep nvcc from contracting them into an FMA),
//     clamped below at 0; the last source pixel repeats; value (v * scale - mean) / std, again
//     without contraction.
//   nearest: floor((r + 0.5) * scale), at most in - 1 (PyTorch's 'nearest-exact').
//   postprocess: (v * std + mean) * scale in double (v * std is exact in double, so FMA
//     contraction cannot change it), clamped to [0, 255] with NaN -> 0, rounded half to even
//     (rint), so the bytes match the CPU kernels and numpy float64.
//
// Launch shape: 1-D grid-stride loops, 256 threads a block.
//   preprocess: one thread per output pixel computes all 3 channels (the taps are shared).
//   postprocess: one thread per output pixel writes its c (1 or 3) bytes.
// Later versions: stage the source rows of a block's output tile in shared memory; write 4 output
// pixels per thread so the uint8 stores of postprocess are 32-bit wide.
#include "cuda/common.cuh"

namespace ev {
namespace {

struct PreArgs {
  int in_h, in_w, row_bytes, eff_h, eff_w, out_h, out_w, top, left;
  bool bilinear, swap_rb;
  float scale_y, scale_x;  // in / eff per axis
  float scale, mean[3], std[3];
};

struct Taps {
  int i0, i1;
  float w1;
};
__device__ __forceinline__ Taps linear_taps(int r, int in, float scale) {
  float f = __fadd_rn(__fmul_rn(scale, static_cast<float>(r) + 0.5f), -0.5f);
  if (f < 0.f) f = 0.f;
  const int i0 = static_cast<int>(f);
  if (i0 >= in - 1) return {in - 1, in - 1, 0.f};
  return {i0, i0 + 1, f - static_cast<float>(i0)};
}

__device__ __forceinline__ int nearest_tap(int r, int in, float scale) {
  const int i = static_cast<int>(floorf(__fmul_rn(static_cast<float>(r) + 0.5f, scale)));
  return max(0, min(i, in - 1));
}

template <typename T>
__global__ void preprocess_kernel(PreArgs a, const uint8_t* __restrict__ src, T* __restrict__ dst) {
  const int plane = a.out_h * a.out_w;
  for (int64_t t = cuda::grid_start(); t < plane; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int oy = i / a.out_w, ox = i - oy * a.out_w;
    float v[3];
    if (a.bilinear) {
      const Taps ty = linear_taps(oy + a.top, a.in_h, a.scale_y);
      const Taps tx = linear_taps(ox + a.left, a.in_w, a.scale_x);
      const uint8_t* r0 = src + ty.i0 * a.row_bytes;
      const uint8_t* r1 = src + ty.i1 * a.row_bytes;
      const int x0 = tx.i0 * 3, x1 = tx.i1 * 3;
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        const float h0 = (1.f - tx.w1) * r0[x0 + c] + tx.w1 * r0[x1 + c];
        const float h1 = (1.f - tx.w1) * r1[x0 + c] + tx.w1 * r1[x1 + c];
        v[c] = (1.f - ty.w1) * h0 + ty.w1 * h1;
      }
    } else {
      const uint8_t* p = src + nearest_tap(oy + a.top, a.in_h, a.scale_y) * a.row_bytes +
                         nearest_tap(ox + a.left, a.in_w, a.scale_x) * 3;
#pragma unroll
      for (int c = 0; c < 3; ++c) v[c] = static_cast<float>(p[c]);
    }
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const float s = v[a.swap_rb ? 2 - c : c];
      cuda::st(dst + c * plane + i, __fsub_rn(__fmul_rn(s, a.scale), a.mean[c]) / a.std[c]);
    }
  }
}

struct PostArgs {
  int c, plane;
  bool swap_rb;
  double scale, mean[3], std[3];
};

__device__ __forceinline__ uint8_t to_u8(float v, double std_, double mean, double scale) {
  double d = (static_cast<double>(v) * std_ + mean) * scale;
  d = d > 0.0 ? d : 0.0;  // also maps NaN to 0
  d = d < 255.0 ? d : 255.0;
  return static_cast<uint8_t>(static_cast<int>(rint(d)));
}

template <typename T>
__global__ void postprocess_kernel(PostArgs a, const T* __restrict__ src, uint8_t* __restrict__ dst) {
  for (int64_t t = cuda::grid_start(); t < a.plane; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    for (int j = 0; j < a.c; ++j) {
      const int c = (a.swap_rb && a.c == 3) ? 2 - j : j;  // source (model) channel
      dst[i * a.c + j] = to_u8(cuda::ld(src + c * a.plane + i), a.std[c], a.mean[c], a.scale);
    }
  }
}

}  // namespace

void preprocess_cuda(const PreprocessShape& s, const uint8_t* src, DType dt, void* dst,
                     Stream stream) {
  PreArgs a;
  const int plane = cuda::to_int(3 * s.out_h * s.out_w, "preprocess output elements") / 3;
  cuda::to_int(s.in_h * s.row_bytes, "preprocess frame bytes");
  if (plane <= 0) return;
  a.in_h = static_cast<int>(s.in_h);
  a.in_w = static_cast<int>(s.in_w);
  a.row_bytes = static_cast<int>(s.row_bytes);
  a.eff_h = cuda::to_int(s.eff_h(), "preprocess resize height");
  a.eff_w = cuda::to_int(s.eff_w(), "preprocess resize width");
  a.out_h = static_cast<int>(s.out_h);
  a.out_w = static_cast<int>(s.out_w);
  a.top = cuda::to_int(s.crop_top(), "preprocess crop");
  a.left = cuda::to_int(s.crop_left(), "preprocess crop");
  a.bilinear = s.interp == Interp::Bilinear;
  a.swap_rb = s.swap_rb;
  a.scale_y = static_cast<float>(s.in_h) / static_cast<float>(s.eff_h());
  a.scale_x = static_cast<float>(s.in_w) / static_cast<float>(s.eff_w());
  a.scale = s.scale;
  for (int c = 0; c < 3; ++c) {
    a.mean[c] = s.mean[c];
    a.std[c] = s.std[c];
  }
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "preprocess", [&](auto tag) {
    using T = typename decltype(tag)::type;
    preprocess_kernel<T><<<cuda::blocks_for(plane), cuda::kBlock, 0, st>>>(a, src,
                                                                          static_cast<T*>(dst));
    EV_CUDA_CHECK_LAUNCH();
  });
}

void postprocess_image_cuda(const PostprocessShape& s, DType dt, const void* src, uint8_t* dst,
                            Stream stream) {
  EV_ASSERT(s.c == 1 || s.c == 3, "postprocess_image channels ", s.c);
  PostArgs a;
  cuda::to_int(s.c * s.h * s.w, "postprocess_image elements");
  a.plane = static_cast<int>(s.h * s.w);
  if (a.plane <= 0) return;
  a.c = static_cast<int>(s.c);
  a.swap_rb = s.swap_rb;
  a.scale = s.scale;
  for (int c = 0; c < 3; ++c) {
    a.mean[c] = s.mean[c];
    a.std[c] = s.std[c];
  }
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "postprocess_image", [&](auto tag) {
    using T = typename decltype(tag)::type;
    postprocess_kernel<T><<<cuda::blocks_for(a.plane), cuda::kBlock, 0, st>>>(
        a, static_cast<const T*>(src), dst);
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
