// Elementwise ops: broadcasting binary (add/sub/mul/div) with an optional activation, and the
// standalone activation.
//
// Launch shape: 1-D grid-stride loops, 256 threads a block, one output element per iteration.
//   binary, contiguous path: both inputs laid out exactly like the output (no broadcasting), so
//     y[i] = a[i] op b[i].
//   binary, general path: the output index is decomposed over up to kMaxDims dimensions and dotted
//     with each input's strides (0 on broadcast dims). The shape travels as a kernel argument with
//     int32 fields, so no 64-bit division runs per element.
// No __restrict__: y may alias an input (in-place add, activation with x == y); every thread reads
// its own elements before writing them.
// Later versions: vectorized (float4 / half2) loads on the contiguous path; a per-channel path
// (b of shape [c, 1, 1]) without the generic index decomposition.
#include "cuda/common.cuh"

namespace ev {
namespace {

struct BinaryIndex {
  int ndim;
  int shape[kMaxDims];
  int a_strides[kMaxDims];
  int b_strides[kMaxDims];
};

__device__ __forceinline__ float binary_apply(BinaryOp op, float a, float b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return 0.f;
}

template <typename T>
__global__ void binary_contiguous_kernel(int n, BinaryOp op, const T* a, const T* b, T* y,
                                         Epilogue e) {
  for (int64_t t = cuda::grid_start(); t < n; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    const float v = binary_apply(op, cuda::ld(a + i), cuda::ld(b + i));
    cuda::st(y + i, activate(v, e.act, e.alpha, e.beta));
  }
}

template <typename T>
__global__ void binary_strided_kernel(int n, BinaryIndex idx, BinaryOp op, const T* a, const T* b,
                                      T* y, Epilogue e) {
  for (int64_t t = cuda::grid_start(); t < n; t += cuda::grid_step()) {
    int rem = static_cast<int>(t);
    int ao = 0, bo = 0;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      const int q = rem / idx.shape[d];
      const int coord = rem - q * idx.shape[d];
      rem = q;
      ao += coord * idx.a_strides[d];
      bo += coord * idx.b_strides[d];
    }
    const float v = binary_apply(op, cuda::ld(a + ao), cuda::ld(b + bo));
    cuda::st(y + static_cast<int>(t), activate(v, e.act, e.alpha, e.beta));
  }
}

template <typename T>
__global__ void activation_kernel(int n, const T* x, T* y, Epilogue e) {
  for (int64_t t = cuda::grid_start(); t < n; t += cuda::grid_step()) {
    const int i = static_cast<int>(t);
    cuda::st(y + i, activate(cuda::ld(x + i), e.act, e.alpha, e.beta));
  }
}

}  // namespace

void binary_cuda(const BinaryShape& s, DType dt, const void* a, const void* b, void* y,
                 const Epilogue& e, Stream stream) {
  EV_ASSERT(s.ndim >= 0 && s.ndim <= kMaxDims, "binary ndim ", s.ndim);
  const int n = cuda::to_int(s.numel(), "binary output elements");
  if (n <= 0) return;
  BinaryIndex idx{};
  idx.ndim = s.ndim;
  bool contiguous = true;
  int64_t expect = 1;  // the contiguous stride of dimension d
  for (int d = s.ndim - 1; d >= 0; --d) {
    idx.shape[d] = cuda::to_int(s.shape[d], "binary dimension");
    idx.a_strides[d] = cuda::to_int(s.a_strides[d], "binary stride");
    idx.b_strides[d] = cuda::to_int(s.b_strides[d], "binary stride");
    // A dimension of extent 1 is never stepped along, so its stride does not matter.
    if (s.shape[d] != 1 && (s.a_strides[d] != expect || s.b_strides[d] != expect))
      contiguous = false;
    expect *= s.shape[d];
  }
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "binary", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    T* py = static_cast<T*>(y);
    if (contiguous)
      binary_contiguous_kernel<T><<<cuda::blocks_for(n), cuda::kBlock, 0, st>>>(n, s.op, pa, pb,
                                                                               py, e);
    else
      binary_strided_kernel<T><<<cuda::blocks_for(n), cuda::kBlock, 0, st>>>(n, idx, s.op, pa, pb,
                                                                            py, e);
    EV_CUDA_CHECK_LAUNCH();
  });
}

void activation_cuda(int64_t numel, DType dt, const void* x, void* y, const Epilogue& e,
                     Stream stream) {
  const int n = cuda::to_int(numel, "activation elements");
  if (n <= 0) return;
  cudaStream_t st = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "activation", [&](auto tag) {
    using T = typename decltype(tag)::type;
    activation_kernel<T><<<cuda::blocks_for(n), cuda::kBlock, 0, st>>>(
        n, static_cast<const T*>(x), static_cast<T*>(y), e);
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
