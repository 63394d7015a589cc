// concat along one axis: input i viewed as [outer, sizes[i], inner] lands in y [outer, sum, inner]
// at column offset (sizes[0] + ... + sizes[i-1]) * inner.
//
// Launch shape: one kernel per input (xs is a host array of device pointers), each a 1-D
// grid-stride 2-D strided copy of outer rows of sizes[i] * inner elements, 256 threads a block,
// one element per iteration. Raw storage is copied, so FP16 moves bit-exact.
// Later versions: one launch for all inputs (pointer table in a kernel argument) to save launch
// latency on many-way concats; 16-byte vector copies when rows are aligned.
#include "cuda/common.cuh"

namespace ev {
namespace {

template <typename T>
__global__ void concat_copy_kernel(int total, int cols, int y_cols, int y_offset,
                                   const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < total; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const int row = i / cols;
    const int col = i - row * cols;
    y[row * y_cols + y_offset + col] = x[i];
  }
}

}  // namespace

void concat_cuda(const ConcatShape& s, DType dt, const void* const* xs, void* y, Stream stream) {
  int64_t sum = 0;
  for (int i = 0; i < s.count; ++i) sum += s.sizes[i];
  const int y_cols = cuda::to_int(sum * s.inner, "concat output row");
  const int outer = cuda::to_int(s.outer, "concat outer extent");
  cuda::to_int(s.outer * sum * s.inner, "concat output elements");
  if (outer <= 0 || y_cols <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "concat", [&](auto tag) {
    using T = typename decltype(tag)::type;
    int offset = 0;
    for (int i = 0; i < s.count; ++i) {
      const int cols = static_cast<int>(s.sizes[i] * s.inner);  // <= y_cols, checked above
      if (cols > 0) {
        const int total = outer * cols;
        concat_copy_kernel<T><<<cuda::blocks_for(total), cuda::kBlock, 0, st>>>(
            total, cols, y_cols, offset, static_cast<const T*>(xs[i]), static_cast<T*>(y));
        EV_CUDA_CHECK_LAUNCH();
      }
      offset += cols;
    }
  });
}

}  // namespace ev
