// pixel_shuffle / DepthToSpace: x [n, c * b * b, h, w] -> y [n, c, h * b, w * b], CRD (PyTorch) or
// DCR (ONNX default) channel order.
//
// Launch shape: 1-D grid-stride loop, 256 threads a block, one thread per OUTPUT element, so the
// writes are coalesced and the reads gather (within a warp they hit b strided runs of x).
// Later versions: a tiled transpose through shared memory to coalesce the reads as well.
#include "cuda/common.cuh"

namespace ev {
namespace {

template <typename T>
__global__ void pixel_shuffle_kernel(int total, int c, int h, int w, int b, bool dcr,
                                     const T* __restrict__ x, T* __restrict__ y) {
  const int ow = w * b, oh = h * b;
  for (int64_t t = cuda::grid_start(); t < total; t += cuda::grid_step()) {
    int rem = static_cast<int>(t);
    const int ox = rem % ow;
    rem /= ow;
    const int oy = rem % oh;
    rem /= oh;
    const int cc = rem % c;
    const int bn = rem / c;
    const int i = oy % b, j = ox % b;
    const int ch = dcr ? (i * b + j) * c + cc : (cc * b + i) * b + j;
    const int src = ((bn * c * b * b + ch) * h + oy / b) * w + ox / b;
    y[t] = x[src];
  }
}

}  // namespace

void pixel_shuffle_cuda(const PixelShuffleShape& s, DType dt, const void* x, void* y,
                        Stream stream) {
  const int total = cuda::to_int(s.n * s.c * s.h * s.block * s.w * s.block,
                                 "pixel_shuffle elements");
  if (total <= 0) return;
  const int c = cuda::to_int(s.c, "pixel_shuffle channels");
  const int h = cuda::to_int(s.h, "pixel_shuffle height");
  const int w = cuda::to_int(s.w, "pixel_shuffle width");
  const int b = cuda::to_int(s.block, "pixel_shuffle block");
  const bool dcr = s.mode == ShuffleMode::DCR;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "pixel_shuffle", [&](auto tag) {
    using T = typename decltype(tag)::type;
    pixel_shuffle_kernel<T><<<cuda::blocks_for(total), cuda::kBlock, 0, st>>>(
        total, c, h, w, b, dcr, static_cast<const T*>(x), static_cast<T*>(y));
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
