// strided_copy (Transpose, Slice, Split, Expand): y dense = x[x_offset + sum_d i_d * x_strides[d]],
// F32 or F16 storage (a copy: the bits move unchanged).
//
// The copy is coalesced first (StridedCopyShape::coalesced), then launched as one of:
//   tiles:  the innermost output dim reads x with a stride other than 0 or +-1 while another dim
//           reads it contiguously (a real transpose, e.g. NCHW -> NHWC): 32 x 32 tiles through
//           shared memory, 32 x 8 threads a block, grid (column tiles, row tiles, outer dims
//           grid-stride), so both the global reads and the global writes are coalesced;
//   gather: everything else (row copies, broadcasts, strided slices): a 1-D grid-stride loop, 256
//           threads a block, one thread per output element, writes coalesced.
// x offsets are 64-bit: a strided view's elements may lie more than 2^31 apart even though both
// tensors have fewer than 2^31 elements.
#include "cuda/common.cuh"

namespace ev {
namespace {

constexpr int kTile = 32, kTileRows = 8;

struct CopyArgs {
  int ndim;
  int shape[kMaxDims];
  int64_t x_strides[kMaxDims];
  int64_t x_offset;
};

template <typename T>
__global__ void gather_kernel(int total, CopyArgs a, const T* __restrict__ x, T* __restrict__ y) {
  for (int64_t t = cuda::grid_start(); t < total; t += cuda::grid_step()) {
    int rem = static_cast<int>(t);
    int64_t xo = a.x_offset;
    for (int d = a.ndim - 1; d > 0; --d) {
      xo += static_cast<int64_t>(rem % a.shape[d]) * a.x_strides[d];
      rem /= a.shape[d];
    }
    y[t] = x[xo + static_cast<int64_t>(rem) * a.x_strides[0]];
  }
}

struct TileArgs {
  CopyArgs c;
  int k;                   // the dim that reads x with stride 1 (the tile's rows)
  int outer;               // product of the dims other than k and the last
  int64_t y_strides[kMaxDims];
};

template <typename T>
__global__ void transpose_tiles_kernel(TileArgs a, const T* __restrict__ x, T* __restrict__ y) {
  __shared__ T tile[kTile][kTile + 1];  // [column][row]; the pad keeps column reads conflict-free
  const int last = a.c.ndim - 1;
  const int rows = a.c.shape[a.k], cols = a.c.shape[last];
  const int64_t xs = a.c.x_strides[last], ys = a.y_strides[a.k];
  const int r0 = blockIdx.y * kTile, c0 = blockIdx.x * kTile;
  for (int o = blockIdx.z; o < a.outer; o += gridDim.z) {
    int rem = o;
    int64_t xo = a.c.x_offset, yo = 0;
    for (int d = last - 1; d >= 0; --d) {
      if (d == a.k) continue;
      const int i = rem % a.c.shape[d];
      rem /= a.c.shape[d];
      xo += i * a.c.x_strides[d];
      yo += i * a.y_strides[d];
    }
    const int r = r0 + threadIdx.x;
    for (int q = threadIdx.y; q < kTile; q += kTileRows)
      if (r < rows && c0 + q < cols) tile[q][threadIdx.x] = x[xo + r + (c0 + q) * xs];
    __syncthreads();
    const int cq = c0 + threadIdx.x;
    for (int rr = threadIdx.y; rr < kTile; rr += kTileRows)
      if (r0 + rr < rows && cq < cols) y[yo + (r0 + rr) * ys + cq] = tile[threadIdx.x][rr];
    __syncthreads();
  }
}

}  // namespace

void strided_copy_cuda(const StridedCopyShape& s, DType dt, const void* x, void* y, Stream stream) {
  const int total = cuda::to_int(s.numel(), "strided_copy elements");
  if (total <= 0) return;
  const StridedCopyShape c = s.coalesced();
  CopyArgs a{};
  a.ndim = c.ndim;
  a.x_offset = c.x_offset;
  for (int d = 0; d < c.ndim; ++d) {
    a.shape[d] = cuda::to_int(c.shape[d], "strided_copy extent");
    a.x_strides[d] = c.x_strides[d];
  }
  const int last = c.ndim - 1;
  const int64_t st = c.x_strides[last];
  int k = -1;
  if (st != 0 && st != 1 && st != -1 && c.shape[last] >= 4)
    for (int d = last - 1; d >= 0 && k < 0; --d)
      if (c.x_strides[d] == 1 && c.shape[d] >= 4) k = d;
  const int64_t row_tiles = k >= 0 ? (c.shape[k] + kTile - 1) / kTile : 0;
  cudaStream_t stm = cuda::to_stream(stream);
  cuda::dispatch_float(dt, "strided_copy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = static_cast<const T*>(x);
    T* py = static_cast<T*>(y);
    if (k >= 0 && row_tiles <= 65535) {
      TileArgs ta{};
      ta.c = a;
      ta.k = k;
      int64_t acc = 1;
      for (int d = last; d >= 0; --d) ta.y_strides[d] = acc, acc *= c.shape[d];
      ta.outer = static_cast<int>(acc / (c.shape[k] * c.shape[last]));
      const dim3 grid(static_cast<unsigned>((c.shape[last] + kTile - 1) / kTile),
                      static_cast<unsigned>(row_tiles),
                      static_cast<unsigned>(ta.outer < 65535 ? ta.outer : 65535));
      transpose_tiles_kernel<T><<<grid, dim3(kTile, kTileRows), 0, stm>>>(ta, px, py);
    } else {
      gather_kernel<T><<<cuda::blocks_for(total), cuda::kBlock, 0, stm>>>(total, a, px, py);
    }
    EV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ev
