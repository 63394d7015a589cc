// pybind11 module edgevision._C: one function per op. Each binding is the single place where an op's
// arguments are validated against its shape struct and where its output is allocated (through the
// `alloc` callable that edgevision/ops.py builds for the caller's framework and device), then it
// dispatches to the reference, fast CPU or CUDA kernel with the GIL released.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "check.h"
#include "ops.h"
#include "runtime/plan_bindings.h"
#include "tensor.h"

namespace py = pybind11;
using namespace ev;

namespace {

using Pair = std::array<int64_t, 2>;
using Quad = std::array<int64_t, 4>;

// Every size a user passes (kernel, pad, stride, output size) stays below this, so that products of a
// few of them cannot overflow int64 before the output-size check catches them.
constexpr int64_t kMaxDim = int64_t(1) << 31;
// Output tensors larger than this many elements are refused up front instead of asking the allocator.
constexpr int64_t kMaxNumel = int64_t(1) << 40;
// CUDA kernels index with 32-bit integers.
constexpr int64_t kMaxCudaNumel = (int64_t(1) << 31) - 1;

void check_range(int64_t v, int64_t lo, const char* op, const char* name) {
  EV_CHECK(v >= lo && v < kMaxDim, op, ": ", name, " must be in [", lo, ", 2^31), got ", v);
}
void check_range(const Pair& v, int64_t lo, const char* op, const char* name) {
  for (int64_t e : v) check_range(e, lo, op, name);
}
void check_range(const Quad& v, int64_t lo, const char* op, const char* name) {
  for (int64_t e : v) check_range(e, lo, op, name);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// A dtype mismatch is a TypeError in Python, not a ValueError.
#define EV_CHECK_TYPE(cond, ...) \
  do {                           \
    if (!(cond)) throw py::type_error(detail::str(op_, ": ", __VA_ARGS__)); \
  } while (0)

// One op call: the device and float dtype every tensor must share, output allocation, workspace,
// and running the kernel on the right device with the GIL released.
class Call {
 public:
  Call(const char* op, py::handle alloc, bool reference, std::uintptr_t stream)
      : op_(op), alloc_(alloc), reference_(reference), stream_(stream) {}

  // The first tensor input fixes the call's device; its dtype is the float dtype unless `dtype` says.
  View input(py::handle h, const char* name, int ndim, std::optional<DType> dtype = {},
             bool allow_strided = false) {
    View v = to_view(h, op_, name, allow_strided);
    if (ndim >= 0)
      EV_CHECK(v.ndim() == ndim, op_, ": ", name, " must have ", ndim, " dimensions, got shape ",
               v.shape_str());
    for (int64_t d : v.shape)
      EV_CHECK(d >= 1, op_, ": ", name, " of shape ", v.shape_str(), " is empty");
    if (!have_device_) {
      have_device_ = true;
      device_ = v.device;
      device_id_ = v.device_id;
      if (!dtype) {
        float_dtype_ = v.dtype;
        EV_CHECK_TYPE(v.dtype == DType::F32 || v.dtype == DType::F16, name, " has dtype ",
                      dtype_name(v.dtype), "; expected float32 or float16");
      }
      if (device_ == DeviceKind::CUDA) {
#ifndef EV_WITH_CUDA
        EV_CHECK(false, op_, ": ", name, " is on ", v.device_str(),
                 " but this edgevision was built without CUDA (rebuild with nvcc on PATH, "
                 "EDGEVISION_CUDA=ON)");
#endif
        EV_CHECK(!reference_, op_, ": reference=True runs the CPU reference kernel; pass CPU tensors");
      } else {
        EV_CHECK_TYPE(float_dtype_ == DType::F32, name,
                      " is float16 on the CPU; the CPU kernels run float32 (float16 runs on CUDA)");
      }
    } else {
      EV_CHECK(v.device == device_ && v.device_id == device_id_, op_, ": ", name, " is on ",
               v.device_str(), " but the other inputs are on ", device_str());
    }
    const DType want = dtype ? *dtype : float_dtype_;
    EV_CHECK_TYPE(v.dtype == want, name, " has dtype ", dtype_name(v.dtype), "; expected ",
                  dtype_name(want));
    if (device_ == DeviceKind::CUDA)
      EV_CHECK(v.numel() <= kMaxCudaNumel, op_, ": ", name, " has ", v.numel(),
               " elements; CUDA kernels take at most 2^31 - 1");
    return v;
  }

  // None -> a view with data == nullptr.
  View optional(py::handle h, const char* name, const std::vector<int64_t>& shape) {
    if (h.is_none()) return View{};
    View v = input(h, name, static_cast<int>(shape.size()));
    EV_CHECK(v.shape == shape, op_, ": ", name, " must have shape ", shape_str(shape), ", got ",
             v.shape_str());
    return v;
  }

  py::object output(const std::vector<int64_t>& shape, View* view, std::optional<DType> dtype = {}) {
    int64_t numel = 1;
    for (int64_t d : shape) {
      EV_CHECK(d >= 1, op_, ": the output shape ", shape_str(shape), " would be empty");
      EV_CHECK(d < kMaxDim && numel <= kMaxNumel / d, op_, ": the output shape ", shape_str(shape),
               " is too large");
      numel *= d;
    }
    const DType dt = dtype ? *dtype : float_dtype_;
    py::object obj = alloc_(py::cast(shape), dtype_name(dt), device_str(), true);
    *view = to_view(obj, op_, "out");
    EV_CHECK(view->shape == shape, op_, ": out must have shape ", shape_str(shape), ", got ",
             view->shape_str());
    EV_CHECK_TYPE(view->dtype == dt, "out has dtype ", dtype_name(view->dtype), "; expected ",
                  dtype_name(dt));
    EV_CHECK(view->device == device_ && view->device_id == device_id_, op_, ": out is on ",
             view->device_str(), " but the inputs are on ", device_str());
    if (device_ == DeviceKind::CUDA)
      EV_CHECK(numel <= kMaxCudaNumel, op_, ": the output has ", numel,
               " elements; CUDA kernels take at most 2^31 - 1");
    return obj;
  }

  // Scratch memory for one call: host memory on the CPU, a framework-allocated byte tensor on CUDA
  // (so it comes from the caller's caching allocator).
  void* workspace(size_t bytes) {
    if (bytes == 0) return nullptr;
    if (device_ == DeviceKind::CPU) {
      host_ws_.reset(new (std::nothrow) unsigned char[bytes]);
      EV_CHECK(host_ws_, op_, ": cannot allocate ", bytes, " bytes of workspace");
      return host_ws_.get();
    }
    View v;
    ws_owner_ = alloc_(py::cast(std::vector<int64_t>{static_cast<int64_t>(bytes)}), "uint8",
                       device_str(), false);
    v = to_view(ws_owner_, op_, "workspace");
    return v.data;
  }

  bool cuda() const { return device_ == DeviceKind::CUDA; }
  bool reference() const { return reference_; }
  DType dtype() const { return float_dtype_; }
  Stream stream() const { return reinterpret_cast<Stream>(stream_); }
  const char* op() const { return op_; }

  // Runs `fn` without the GIL, on the inputs' CUDA device when they are on one.
  template <typename Fn>
  void run(Fn&& fn) {
    py::gil_scoped_release release;
#ifdef EV_WITH_CUDA
    if (device_ == DeviceKind::CUDA) {
      const int prev = cuda_current_device();
      if (prev != device_id_) cuda_set_device(device_id_);
      try {
        fn();
      } catch (...) {
        if (prev != device_id_) cuda_set_device(prev);
        throw;
      }
      if (prev != device_id_) cuda_set_device(prev);
      return;
    }
#endif
    fn();
  }

 private:
  std::string device_str() const {
    return device_ == DeviceKind::CPU ? std::string("cpu") : "cuda:" + std::to_string(device_id_);
  }
  const char* op_;
  py::handle alloc_;
  bool reference_;
  std::uintptr_t stream_;
  bool have_device_ = false;
  DeviceKind device_ = DeviceKind::CPU;
  int device_id_ = 0;
  DType float_dtype_ = DType::F32;
  std::unique_ptr<unsigned char[]> host_ws_;
  py::object ws_owner_;
};

float* f32(const View& v) { return static_cast<float*>(v.data); }

Epilogue epilogue(Act act, float alpha, float beta, bool residual_after_act) {
  Epilogue e;
  e.act = act;
  e.alpha = alpha;
  e.beta = beta;
  e.residual_after_act = residual_after_act;
  return e;
}

#ifdef EV_WITH_CUDA
#define EV_IF_CUDA(...) __VA_ARGS__
#else
#define EV_IF_CUDA(...) EV_ASSERT(false, "CUDA dispatch in a CPU-only build")
#endif

// ---------------------------------------------------------------------------------------------

py::object conv2d(py::handle x_, py::handle w_, py::handle b_, py::handle r_, Pair stride, Quad pad,
                  Pair dil, int64_t groups, Act act, float alpha, float beta, bool res_after_act,
                  py::handle alloc, bool reference, std::uintptr_t stream) {
  Call call("conv2d", alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  View w = call.input(w_, "weight", 4);
  check_range(stride, 1, "conv2d", "stride");
  check_range(pad, 0, "conv2d", "padding");
  check_range(dil, 1, "conv2d", "dilation");
  check_range(groups, 1, "conv2d", "groups");
  Conv2dShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.h = x.shape[2], s.w = x.shape[3];
  s.k = w.shape[0], s.r = w.shape[2], s.s = w.shape[3];
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_t = pad[0], s.pad_l = pad[1], s.pad_b = pad[2], s.pad_r = pad[3];
  s.dil_h = dil[0], s.dil_w = dil[1];
  s.groups = groups;
  EV_CHECK(s.c % groups == 0 && s.k % groups == 0, "conv2d: groups=", groups,
           " must divide the input channels (", s.c, ") and the output channels (", s.k, ")");
  EV_CHECK(w.shape[1] == s.c / groups, "conv2d: weight must have shape [out_channels, in_channels / ",
           "groups, kh, kw] = [", s.k, ", ", s.c / groups, ", ", s.r, ", ", s.s, "] for x ",
           x.shape_str(), ", got ", w.shape_str());
  EV_CHECK(s.out_h() >= 1 && s.out_w() >= 1, "conv2d: the padded input ", x.shape_str(),
           " is smaller than the dilated kernel ", w.shape_str());
  const std::vector<int64_t> yshape{s.n, s.k, s.out_h(), s.out_w()};
  View b = call.optional(b_, "bias", {s.k});
  View r = call.optional(r_, "residual", yshape);
  View y;
  py::object out = call.output(yshape, &y);
  const Epilogue e = epilogue(act, alpha, beta, res_after_act);
  if (call.cuda()) {
    EV_IF_CUDA(void* ws = call.workspace(conv2d_cuda_workspace(s, call.dtype()));
               call.run([&] { conv2d_cuda(s, call.dtype(), x.data, w.data, b.data, r.data, y.data,
                                          e, ws, call.stream()); }));
  } else if (call.reference()) {
    call.run([&] { conv2d_ref(s, f32(x), f32(w), f32(b), f32(r), f32(y), e); });
  } else {
    void* ws = call.workspace(conv2d_cpu_workspace(s));
    call.run([&] { conv2d_cpu(s, f32(x), f32(w), f32(b), f32(r), f32(y), e, ws); });
  }
  return out;
}

py::object conv_transpose2d(py::handle x_, py::handle w_, py::handle b_, Pair stride, Quad pad,
                            Pair out_pad, Pair dil, int64_t groups, Act act, float alpha,
                            float beta, py::handle alloc, bool reference, std::uintptr_t stream) {
  const char* op = "conv_transpose2d";
  Call call(op, alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  View w = call.input(w_, "weight", 4);
  check_range(stride, 1, op, "stride");
  check_range(pad, 0, op, "padding");
  check_range(out_pad, 0, op, "output_padding");
  check_range(dil, 1, op, "dilation");
  check_range(groups, 1, op, "groups");
  ConvTranspose2dShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.h = x.shape[2], s.w = x.shape[3];
  s.k = w.shape[1] * groups, s.r = w.shape[2], s.s = w.shape[3];
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_t = pad[0], s.pad_l = pad[1], s.pad_b = pad[2], s.pad_r = pad[3];
  s.out_pad_h = out_pad[0], s.out_pad_w = out_pad[1];
  s.dil_h = dil[0], s.dil_w = dil[1];
  s.groups = groups;
  EV_CHECK(s.c % groups == 0, op, ": groups=", groups, " must divide the input channels (", s.c, ")");
  EV_CHECK(w.shape[0] == s.c, op, ": weight must have shape [in_channels, out_channels / groups, ",
           "kh, kw] with in_channels = ", s.c, " for x ", x.shape_str(), ", got ", w.shape_str());
  EV_CHECK(s.out_pad_h < std::max(s.stride_h, s.dil_h) && s.out_pad_w < std::max(s.stride_w, s.dil_w),
           op, ": output_padding must be smaller than stride or dilation");
  EV_CHECK(s.out_h() >= 1 && s.out_w() >= 1, op, ": padding removes the whole output");
  View b = call.optional(b_, "bias", {s.k});
  View y;
  py::object out = call.output({s.n, s.k, s.out_h(), s.out_w()}, &y);
  const Epilogue e = epilogue(act, alpha, beta, false);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { conv_transpose2d_cuda(s, call.dtype(), x.data, w.data, b.data, y.data,
                                                    e, call.stream()); }));
  } else if (call.reference()) {
    call.run([&] { conv_transpose2d_ref(s, f32(x), f32(w), f32(b), f32(y), e); });
  } else {
    void* ws = call.workspace(conv_transpose2d_cpu_workspace(s));
    call.run([&] { conv_transpose2d_cpu(s, f32(x), f32(w), f32(b), f32(y), e, ws); });
  }
  return out;
}

py::object pool2d(bool is_max, py::handle x_, Pair kernel, Pair stride, Quad pad, Pair dil,
                  bool ceil_mode, bool count_include_pad, py::handle alloc, bool reference,
                  std::uintptr_t stream) {
  const char* op = is_max ? "max_pool2d" : "avg_pool2d";
  Call call(op, alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  check_range(kernel, 1, op, "kernel_size");
  check_range(stride, 1, op, "stride");
  check_range(pad, 0, op, "padding");
  check_range(dil, 1, op, "dilation");
  Pool2dShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.h = x.shape[2], s.w = x.shape[3];
  s.kh = kernel[0], s.kw = kernel[1];
  s.stride_h = stride[0], s.stride_w = stride[1];
  s.pad_t = pad[0], s.pad_l = pad[1], s.pad_b = pad[2], s.pad_r = pad[3];
  s.dil_h = dil[0], s.dil_w = dil[1];
  s.ceil_mode = ceil_mode;
  s.count_include_pad = count_include_pad;
  EV_CHECK(is_max || (s.dil_h == 1 && s.dil_w == 1), op, ": dilation is only defined for max pooling");
  // Max pooling accepts any padding (ONNX allows pads beyond the kernel; a window entirely in padding
  // gives -inf). Average pooling would divide such a window by zero, so its pads stay below the kernel.
  EV_CHECK(is_max || (s.pad_t < s.kh && s.pad_b < s.kh && s.pad_l < s.kw && s.pad_r < s.kw), op,
           ": padding must be smaller than the kernel, so no window lies entirely in it");
  EV_CHECK(s.out_h() >= 1 && s.out_w() >= 1, op, ": the padded input ", x.shape_str(),
           " is smaller than the kernel");
  View y;
  py::object out = call.output({s.n, s.c, s.out_h(), s.out_w()}, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] {
      if (is_max) max_pool2d_cuda(s, call.dtype(), x.data, y.data, call.stream());
      else avg_pool2d_cuda(s, call.dtype(), x.data, y.data, call.stream());
    }));
  } else {
    call.run([&] {
      if (is_max) (call.reference() ? max_pool2d_ref : max_pool2d_cpu)(s, f32(x), f32(y));
      else (call.reference() ? avg_pool2d_ref : avg_pool2d_cpu)(s, f32(x), f32(y));
    });
  }
  return out;
}

py::object global_pool(bool is_max, py::handle x_, py::handle alloc, bool reference,
                       std::uintptr_t stream) {
  const char* op = is_max ? "global_max_pool2d" : "global_avg_pool2d";
  Call call(op, alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  GlobalPoolShape s{x.shape[0], x.shape[1], x.shape[2], x.shape[3]};
  View y;
  py::object out = call.output({s.n, s.c, 1, 1}, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] {
      (is_max ? global_max_pool_cuda : global_avg_pool_cuda)(s, call.dtype(), x.data, y.data,
                                                             call.stream());
    }));
  } else {
    call.run([&] {
      if (is_max) (call.reference() ? global_max_pool_ref : global_max_pool_cpu)(s, f32(x), f32(y));
      else (call.reference() ? global_avg_pool_ref : global_avg_pool_cpu)(s, f32(x), f32(y));
    });
  }
  return out;
}

py::object gemm(py::handle a_, py::handle b_, py::handle bias_, py::handle r_, bool trans_a,
                bool trans_b, float alpha, Act act, float act_alpha, float act_beta,
                bool res_after_act, py::handle alloc, bool reference, std::uintptr_t stream) {
  Call call("gemm", alloc, reference, stream);
  View a = call.input(a_, "a", 2);
  View b = call.input(b_, "b", 2);
  GemmShape s;
  s.trans_a = trans_a, s.trans_b = trans_b, s.alpha = alpha;
  s.m = trans_a ? a.shape[1] : a.shape[0];
  s.k = trans_a ? a.shape[0] : a.shape[1];
  s.n = trans_b ? b.shape[0] : b.shape[1];
  const int64_t kb = trans_b ? b.shape[1] : b.shape[0];
  EV_CHECK(kb == s.k, "gemm: inner dimensions differ: a ", a.shape_str(), (trans_a ? " (transposed)" : ""),
           " has k = ", s.k, ", b ", b.shape_str(), (trans_b ? " (transposed)" : ""), " has k = ", kb);
  View bias = call.optional(bias_, "bias", {s.n});
  View r = call.optional(r_, "residual", {s.m, s.n});
  View y;
  py::object out = call.output({s.m, s.n}, &y);
  const Epilogue e = epilogue(act, act_alpha, act_beta, res_after_act);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { gemm_cuda(s, call.dtype(), a.data, b.data, bias.data, r.data, y.data, e,
                                        call.stream()); }));
  } else if (call.reference()) {
    call.run([&] { gemm_ref(s, f32(a), f32(b), f32(bias), f32(r), f32(y), e); });
  } else {
    void* ws = call.workspace(gemm_cpu_workspace(s));
    call.run([&] { gemm_cpu(s, f32(a), f32(b), f32(bias), f32(r), f32(y), e, ws); });
  }
  return out;
}

py::object pixel_shuffle(py::handle x_, int64_t block, ShuffleMode mode, py::handle alloc,
                         bool reference, std::uintptr_t stream) {
  Call call("pixel_shuffle", alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  check_range(block, 1, "pixel_shuffle", "upscale_factor");
  EV_CHECK(block <= 4096 && x.shape[1] % (block * block) == 0, "pixel_shuffle: channels (",
           x.shape[1], ") must be divisible by upscale_factor^2 = ", block * block);
  PixelShuffleShape s;
  s.n = x.shape[0], s.c = x.shape[1] / (block * block), s.h = x.shape[2], s.w = x.shape[3];
  s.block = block;
  s.mode = mode;
  View y;
  py::object out = call.output({s.n, s.c, s.h * block, s.w * block}, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { pixel_shuffle_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? pixel_shuffle_ref : pixel_shuffle_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

// Output size from `size` or from `scale` (floor(in * scale), as ONNX and PyTorch compute it).
py::object resize(py::handle x_, std::optional<Pair> size, std::optional<std::array<double, 2>> scale,
                  ResizeMode mode, CoordMode coord, NearestMode nearest, py::handle alloc,
                  bool reference, std::uintptr_t stream) {
  Call call("resize", alloc, reference, stream);
  View x = call.input(x_, "x", 4);
  EV_CHECK(size.has_value() != scale.has_value(), "resize: pass exactly one of size and scale_factor");
  ResizeShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.h = x.shape[2], s.w = x.shape[3];
  s.mode = mode, s.coord = coord, s.nearest = nearest;
  if (size) {
    check_range(*size, 1, "resize", "size");
    s.out_h = (*size)[0], s.out_w = (*size)[1];
  } else {
    for (double f : *scale)
      EV_CHECK(f > 0 && f < 65536, "resize: scale_factor must be in (0, 65536), got ", f);
    s.out_h = static_cast<int64_t>((*scale)[0] * s.h);
    s.out_w = static_cast<int64_t>((*scale)[1] * s.w);
    s.scale_h = static_cast<float>((*scale)[0]);
    s.scale_w = static_cast<float>((*scale)[1]);
    EV_CHECK(s.out_h >= 1 && s.out_w >= 1, "resize: scale_factor ", (*scale)[0], "x", (*scale)[1],
             " gives an empty output for x ", x.shape_str());
  }
  View y;
  py::object out = call.output({s.n, s.c, s.out_h, s.out_w}, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { resize_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? resize_ref : resize_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

int64_t normalize_axis(int64_t axis, int ndim, const char* op) {
  EV_CHECK(axis >= -ndim && axis < ndim, op, ": axis ", axis, " is out of range for ", ndim,
           " dimensions");
  return axis < 0 ? axis + ndim : axis;
}

py::object softmax(py::handle x_, int64_t axis, bool log, py::handle alloc, bool reference,
                   std::uintptr_t stream) {
  const char* op = log ? "log_softmax" : "softmax";
  Call call(op, alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  EV_CHECK(x.ndim() >= 1, op, ": x must have at least one dimension");
  const int64_t ax = normalize_axis(axis, x.ndim(), op);
  SoftmaxShape s;
  s.log = log;
  for (int i = 0; i < x.ndim(); ++i) {
    if (i < ax) s.outer *= x.shape[i];
    else if (i > ax) s.inner *= x.shape[i];
  }
  s.dim = x.shape[ax];
  View y;
  py::object out = call.output(x.shape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { softmax_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? softmax_ref : softmax_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

// numpy broadcasting, then adjacent dimensions that are contiguous in both operands (or broadcast in
// the same way) are merged, so [n, c, h, w] + [1, c, 1, 1] reaches the kernel as 3 dims.
BinaryShape broadcast(const View& a, const View& b, BinaryOp opk, const char* op,
                      std::vector<int64_t>* out_shape) {
  const int nd = std::max(a.ndim(), b.ndim());
  std::vector<int64_t> shape(nd), sa(nd), sb(nd);
  auto dense_strides = [](const View& v) {
    std::vector<int64_t> st(v.ndim());
    int64_t acc = 1;
    for (int i = v.ndim() - 1; i >= 0; --i) st[i] = acc, acc *= v.shape[i];
    return st;
  };
  const auto da = dense_strides(a), db = dense_strides(b);
  for (int i = 0; i < nd; ++i) {
    const int ia = i - (nd - a.ndim()), ib = i - (nd - b.ndim());
    const int64_t ea = ia >= 0 ? a.shape[ia] : 1, eb = ib >= 0 ? b.shape[ib] : 1;
    EV_CHECK(ea == eb || ea == 1 || eb == 1, op, ": shapes ", a.shape_str(), " and ", b.shape_str(),
             " cannot be broadcast together (dimension ", i, ": ", ea, " vs ", eb, ")");
    shape[i] = std::max(ea, eb);
    sa[i] = (ea == 1) ? 0 : da[ia];
    sb[i] = (eb == 1) ? 0 : db[ib];
  }
  *out_shape = shape;
  // Drop size-1 dims, then merge mergeable neighbours.
  std::vector<int64_t> ms, ma, mb;
  for (int i = 0; i < nd; ++i) {
    if (shape[i] == 1) continue;
    if (!ms.empty() && ma.back() == sa[i] * shape[i] && mb.back() == sb[i] * shape[i]) {
      ms.back() *= shape[i];
      ma.back() = sa[i];
      mb.back() = sb[i];
    } else {
      ms.push_back(shape[i]);
      ma.push_back(sa[i]);
      mb.push_back(sb[i]);
    }
  }
  if (ms.empty()) ms = {1}, ma = {0}, mb = {0};
  EV_CHECK(static_cast<int>(ms.size()) <= kMaxDims, op, ": broadcasting ", a.shape_str(), " with ",
           b.shape_str(), " needs more than ", kMaxDims, " dimensions");
  BinaryShape s;
  s.op = opk;
  s.ndim = static_cast<int>(ms.size());
  for (int i = 0; i < s.ndim; ++i) s.shape[i] = ms[i], s.a_strides[i] = ma[i], s.b_strides[i] = mb[i];
  return s;
}

py::object binary(py::handle a_, py::handle b_, BinaryOp opk, Act act, float alpha, float beta,
                  py::handle alloc, bool reference, std::uintptr_t stream) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  const char* op = names[static_cast<int>(opk)];
  Call call(op, alloc, reference, stream);
  View a = call.input(a_, "a", -1);
  View b = call.input(b_, "b", -1);
  std::vector<int64_t> shape;
  const BinaryShape s = broadcast(a, b, opk, op, &shape);
  if (shape.empty()) shape = {1};
  View y;
  py::object out = call.output(shape, &y);
  const Epilogue e = epilogue(act, alpha, beta, false);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { binary_cuda(s, call.dtype(), a.data, b.data, y.data, e, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? binary_ref : binary_cpu)(s, f32(a), f32(b), f32(y), e); });
  }
  return out;
}

py::object activation(py::handle x_, Act act, float alpha, float beta, py::handle alloc,
                      bool reference, std::uintptr_t stream) {
  Call call("activation", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  View y;
  py::object out = call.output(x.shape.empty() ? std::vector<int64_t>{1} : x.shape, &y);
  const Epilogue e = epilogue(act, alpha, beta, false);
  const int64_t n = x.numel();
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { activation_cuda(n, call.dtype(), x.data, y.data, e, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? activation_ref : activation_cpu)(n, f32(x), f32(y), e); });
  }
  return out;
}

py::object batch_norm(py::handle x_, py::handle g_, py::handle b_, py::handle m_, py::handle v_,
                      float eps, Act act, float alpha, float beta, py::handle alloc,
                      bool reference, std::uintptr_t stream) {
  Call call("batch_norm", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  EV_CHECK(x.ndim() >= 2, "batch_norm: x must be [n, c, ...], got ", x.shape_str());
  EV_CHECK(eps >= 0, "batch_norm: eps must be >= 0, got ", eps);
  BatchNormShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.eps = eps;
  for (int i = 2; i < x.ndim(); ++i) s.hw *= x.shape[i];
  View g = call.input(g_, "gamma", 1), bb = call.input(b_, "beta", 1);
  View m = call.input(m_, "mean", 1), v = call.input(v_, "var", 1);
  for (const View* p : {&g, &bb, &m, &v})
    EV_CHECK(p->shape[0] == s.c, "batch_norm: gamma, beta, mean and var must have shape [", s.c,
             "], got ", p->shape_str());
  View y;
  py::object out = call.output(x.shape, &y);
  const Epilogue e = epilogue(act, alpha, beta, false);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { batch_norm_cuda(s, call.dtype(), x.data, g.data, bb.data, m.data, v.data,
                                              y.data, e, call.stream()); }));
  } else {
    call.run([&] {
      (call.reference() ? batch_norm_ref : batch_norm_cpu)(s, f32(x), f32(g), f32(bb), f32(m), f32(v),
                                                           f32(y), e);
    });
  }
  return out;
}

py::object concat(py::sequence xs_, int64_t axis, py::handle alloc, bool reference,
                  std::uintptr_t stream) {
  Call call("concat", alloc, reference, stream);
  EV_CHECK(py::len(xs_) >= 1, "concat: needs at least one tensor");
  std::vector<View> xs;
  for (size_t i = 0; i < py::len(xs_); ++i) {
    const std::string name = "tensors[" + std::to_string(i) + "]";
    xs.push_back(call.input(xs_[i], name.c_str(), -1));
  }
  const int nd = xs[0].ndim();
  EV_CHECK(nd >= 1, "concat: tensors must have at least one dimension");
  const int64_t ax = normalize_axis(axis, nd, "concat");
  std::vector<int64_t> shape = xs[0].shape, sizes;
  shape[ax] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    bool same = xs[i].ndim() == nd;
    for (int d = 0; same && d < nd; ++d) same = d == ax || xs[i].shape[d] == xs[0].shape[d];
    EV_CHECK(same, "concat: tensors[", i, "] has shape ", xs[i].shape_str(), " but tensors[0] has ",
             xs[0].shape_str(), "; they may differ only along axis ", ax);
    sizes.push_back(xs[i].shape[ax]);
    shape[ax] += xs[i].shape[ax];
  }
  ConcatShape s;
  for (int d = 0; d < ax; ++d) s.outer *= shape[d];
  for (int d = ax + 1; d < nd; ++d) s.inner *= shape[d];
  s.count = static_cast<int>(xs.size());
  s.sizes = sizes.data();
  std::vector<const void*> ptrs;
  for (auto& v : xs) ptrs.push_back(v.data);
  View y;
  py::object out = call.output(shape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { concat_cuda(s, call.dtype(), ptrs.data(), y.data, call.stream()); }));
  } else {
    call.run([&] {
      (call.reference() ? concat_ref : concat_cpu)(
          s, reinterpret_cast<const float* const*>(ptrs.data()), f32(y));
    });
  }
  return out;
}

py::object preprocess(py::handle frame_, Pair size, std::optional<Pair> resize_to, bool swap_rb,
                      Interp interp, float scale, std::array<float, 3> mean,
                      std::array<float, 3> stdv, std::string out_dtype, py::handle alloc,
                      bool reference, std::uintptr_t stream) {
  Call call("preprocess", alloc, reference, stream);
  View f = call.input(frame_, "frame", 3, DType::U8, /*allow_strided=*/true);
  EV_CHECK(f.shape[2] == 3, "preprocess: frame must be [height, width, 3] (BGR or RGB), got ",
           f.shape_str());
  EV_CHECK(f.strides[2] == 1 && f.strides[1] == 3 && f.strides[0] >= 3 * f.shape[1],
           "preprocess: frame pixels must be packed (row padding is fine), got strides ",
           shape_str(f.strides));
  PreprocessShape s;
  s.in_h = f.shape[0], s.in_w = f.shape[1], s.row_bytes = f.strides[0];
  check_range(size, 1, "preprocess", "size");
  s.out_h = size[0], s.out_w = size[1];
  if (resize_to) {
    check_range(*resize_to, 1, "preprocess", "resize");
    s.resize_h = (*resize_to)[0], s.resize_w = (*resize_to)[1];
  }
  EV_CHECK(s.out_h <= s.eff_h() && s.out_w <= s.eff_w(), "preprocess: the crop ", s.out_h, "x",
           s.out_w, " is larger than the ", resize_to ? "resized" : "", " frame ", s.eff_h(), "x",
           s.eff_w());
  s.swap_rb = swap_rb, s.interp = interp, s.scale = scale;
  for (int i = 0; i < 3; ++i) {
    EV_CHECK(stdv[i] != 0.f, "preprocess: std must be non-zero");
    s.mean[i] = mean[i], s.std[i] = stdv[i];
  }
  DType dt = DType::F32;
  if (out_dtype == "float16") dt = DType::F16;
  else EV_CHECK(out_dtype == "float32", "preprocess: dtype must be float32 or float16");
  EV_CHECK(call.cuda() || dt == DType::F32, "preprocess: float16 output runs on CUDA only");
  View y;
  py::object out = call.output({1, 3, s.out_h, s.out_w}, &y, dt);
  const auto* src = static_cast<const uint8_t*>(f.data);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { preprocess_cuda(s, src, dt, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? preprocess_ref : preprocess_cpu)(s, src, f32(y)); });
  }
  return out;
}

py::object postprocess_image(py::handle x_, bool swap_rb, float scale, std::array<float, 3> mean,
                             std::array<float, 3> stdv, py::handle alloc, bool reference,
                             std::uintptr_t stream) {
  Call call("postprocess_image", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  EV_CHECK(x.ndim() == 3 || (x.ndim() == 4 && x.shape[0] == 1),
           "postprocess_image: x must be [c, h, w] or [1, c, h, w], got ", x.shape_str());
  PostprocessShape s;
  const int off = x.ndim() - 3;
  s.c = x.shape[off], s.h = x.shape[off + 1], s.w = x.shape[off + 2];
  EV_CHECK(s.c == 1 || s.c == 3, "postprocess_image: x must have 1 or 3 channels, got ", s.c);
  s.swap_rb = swap_rb, s.scale = scale;
  for (int i = 0; i < 3; ++i) s.mean[i] = mean[i], s.std[i] = stdv[i];
  View y;
  py::object out = call.output({s.h, s.w, s.c}, &y, DType::U8);
  auto* dst = static_cast<uint8_t*>(y.data);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { postprocess_image_cuda(s, call.dtype(), x.data, dst, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? postprocess_image_ref : postprocess_image_cpu)(s, f32(x), dst); });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// strided_copy and the graph ops made of it (transpose, slice, expand). Each builds the strided
// view of x that y copies. transpose, slice and expand accept any strided x (a numpy slice, a torch
// view): they compose x's own strides with in-range indices, so every read lies inside x by
// construction. strided_copy takes strides over a contiguous x and checks the bounds itself.

py::object strided_copy_view(Call& call, const View& x, const std::vector<int64_t>& yshape,
                             const std::vector<int64_t>& strides, int64_t offset,
                             bool check_bounds) {
  const char* op = call.op();
  EV_CHECK(strides.size() == yshape.size(), op, ": shape ", shape_str(yshape), " and strides ",
           shape_str(strides), " must have the same length");
  for (int64_t d : yshape)
    EV_CHECK(d >= 1 && d < kMaxDim, op, ": the result shape ", shape_str(yshape),
             d < 1 ? " would be empty" : " is too large");
  const int64_t xn = x.numel();
  if (check_bounds)
    EV_CHECK(offset >= 0 && offset < xn, op, ": offset ", offset, " is outside x of ", xn,
             " elements");
  // Lowest and highest element read, accumulated without overflow: each span is checked against
  // the size of x before it is formed.
  int64_t lo = offset, hi = offset;
  StridedCopyShape s;
  s.ndim = 0;
  s.x_offset = offset;
  for (size_t d = 0; d < yshape.size(); ++d) {
    if (yshape[d] == 1) continue;  // its stride is never used
    const int64_t st = strides[d];
    if (check_bounds) {
      const int64_t mag = st == std::numeric_limits<int64_t>::min() ? xn + 1 : (st < 0 ? -st : st);
      EV_CHECK(mag == 0 || (mag <= xn && yshape[d] - 1 <= xn / mag), op, ": stride ", st,
               " along dimension ", d, " (extent ", yshape[d], ") reads outside x of shape ",
               x.shape_str());
      (st < 0 ? lo : hi) += (yshape[d] - 1) * st;
      EV_CHECK(lo >= 0 && hi < xn, op, ": the view (shape ", shape_str(yshape), ", strides ",
               shape_str(strides), ", offset ", offset, ") reads outside x of shape ",
               x.shape_str());
    }
    EV_CHECK(s.ndim < kMaxDims, op, ": the result has more than ", kMaxDims,
             " dimensions of extent > 1");
    s.shape[s.ndim] = yshape[d];
    s.x_strides[s.ndim] = st;
    ++s.ndim;
  }
  if (s.ndim == 0) s.ndim = 1, s.shape[0] = 1, s.x_strides[0] = 0;
  View y;
  py::object out = call.output(yshape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { strided_copy_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? strided_copy_ref : strided_copy_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

py::object strided_copy(py::handle x_, std::vector<int64_t> shape, std::vector<int64_t> strides,
                        int64_t offset, py::handle alloc, bool reference, std::uintptr_t stream) {
  Call call("strided_copy", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  EV_CHECK(!shape.empty(), "strided_copy: shape must have at least one dimension");
  return strided_copy_view(call, x, shape, strides, offset, true);
}

py::object transpose(py::handle x_, std::optional<std::vector<int64_t>> perm, py::handle alloc,
                     bool reference, std::uintptr_t stream) {
  Call call("transpose", alloc, reference, stream);
  View x = call.input(x_, "x", -1, {}, /*allow_strided=*/true);
  const int nd = x.ndim();
  EV_CHECK(nd >= 1, "transpose: x must have at least one dimension");
  std::vector<int64_t> p(nd);
  for (int i = 0; i < nd; ++i) p[i] = nd - 1 - i;
  if (perm) {
    EV_CHECK(static_cast<int>(perm->size()) == nd, "transpose: perm ", shape_str(*perm),
             " must list each of the ", nd, " axes of x ", x.shape_str(), " once");
    std::vector<bool> seen(nd, false);
    for (int i = 0; i < nd; ++i) {
      p[i] = normalize_axis((*perm)[i], nd, "transpose");
      EV_CHECK(!seen[p[i]], "transpose: perm ", shape_str(*perm), " repeats axis ", p[i]);
      seen[p[i]] = true;
    }
  }
  std::vector<int64_t> shape(nd), strides(nd);
  for (int i = 0; i < nd; ++i) shape[i] = x.shape[p[i]], strides[i] = x.strides[p[i]];
  return strided_copy_view(call, x, shape, strides, 0, false);
}

// ONNX Slice (numpy basic slicing): negative starts/ends count from the end, then both are clamped
// to the axis ([0, dim] for positive steps, [-1, dim - 1] for negative ones).
py::object slice(py::handle x_, std::vector<int64_t> starts, std::vector<int64_t> ends,
                 std::optional<std::vector<int64_t>> axes, std::optional<std::vector<int64_t>> steps,
                 py::handle alloc, bool reference, std::uintptr_t stream) {
  Call call("slice", alloc, reference, stream);
  View x = call.input(x_, "x", -1, {}, /*allow_strided=*/true);
  const int nd = x.ndim();
  EV_CHECK(nd >= 1, "slice: x must have at least one dimension");
  const size_t k = starts.size();
  EV_CHECK(ends.size() == k && (!axes || axes->size() == k) && (!steps || steps->size() == k),
           "slice: starts, ends, axes and steps must have the same length, got ", k, ", ",
           ends.size(), ", ", axes ? axes->size() : k, ", ", steps ? steps->size() : k);
  EV_CHECK(k <= static_cast<size_t>(nd), "slice: ", k, " axes given for x ", x.shape_str());
  std::vector<int64_t> shape = x.shape, strides = x.strides;
  const std::vector<int64_t>& xs = x.strides;
  std::vector<bool> seen(nd, false);
  int64_t offset = 0;
  for (size_t i = 0; i < k; ++i) {
    const int64_t a = normalize_axis(axes ? (*axes)[i] : static_cast<int64_t>(i), nd, "slice");
    EV_CHECK(!seen[a], "slice: axis ", a, " is given twice");
    seen[a] = true;
    const int64_t dim = x.shape[a];
    int64_t step = steps ? (*steps)[i] : 1;
    EV_CHECK(step != 0, "slice: steps must be non-zero (axis ", a, ")");
    // A step longer than the axis takes one element, whatever its size: bounding it keeps
    // step * stride from overflowing.
    step = std::max(-(dim + 1), std::min(dim + 1, step));
    int64_t b = starts[i], e = ends[i];
    if (b < 0) b += dim;
    if (e < 0) e += dim;
    int64_t len;
    if (step > 0) {
      b = std::clamp<int64_t>(b, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      len = e > b ? (e - b + step - 1) / step : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      len = b > e ? (b - e - step - 1) / -step : 0;
    }
    EV_CHECK(len >= 1, "slice: axis ", a, " of x ", x.shape_str(), " sliced from ", starts[i],
             " to ", ends[i], " by ", steps ? (*steps)[i] : 1, " is empty");
    shape[a] = len;
    strides[a] = step * xs[a];
    offset += b * xs[a];
  }
  return strided_copy_view(call, x, shape, strides, offset, false);
}

// ONNX Expand: x and `shape` broadcast against each other (numpy rules, either side may be 1).
py::object expand(py::handle x_, std::vector<int64_t> shape, py::handle alloc, bool reference,
                  std::uintptr_t stream) {
  Call call("expand", alloc, reference, stream);
  View x = call.input(x_, "x", -1, {}, /*allow_strided=*/true);
  const int nd = std::max<int>(x.ndim(), static_cast<int>(shape.size()));
  EV_CHECK(nd >= 1, "expand: x and shape are both empty");
  std::vector<int64_t> yshape(nd), strides(nd);
  for (int i = 0; i < nd; ++i) {
    const int ix = i - (nd - x.ndim()), is = i - (nd - static_cast<int>(shape.size()));
    const int64_t ex = ix >= 0 ? x.shape[ix] : 1, es = is >= 0 ? shape[is] : 1;
    EV_CHECK(es >= 1, "expand: shape ", shape_str(shape), " must have dimensions >= 1");
    EV_CHECK(ex == es || ex == 1 || es == 1, "expand: x ", x.shape_str(), " cannot be broadcast to ",
             shape_str(shape), " (dimension ", i, ": ", ex, " vs ", es, ")");
    yshape[i] = std::max(ex, es);
    strides[i] = ex == 1 ? 0 : x.strides[ix];
  }
  return strided_copy_view(call, x, yshape, strides, 0, false);
}

py::object pad(py::handle x_, std::vector<int64_t> begin, std::vector<int64_t> end, PadMode mode,
               float value, py::handle alloc, bool reference, std::uintptr_t stream) {
  Call call("pad", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  const int nd = x.ndim();
  EV_CHECK(nd >= 1 && nd <= kMaxDims, "pad: x must have 1 to ", kMaxDims, " dimensions, got ",
           x.shape_str());
  EV_CHECK(static_cast<int>(begin.size()) == nd && static_cast<int>(end.size()) == nd,
           "pad: pads_begin ", shape_str(begin), " and pads_end ", shape_str(end),
           " must each have one entry per dimension of x ", x.shape_str());
  PadShape s;
  s.ndim = nd, s.mode = mode, s.value = value;
  std::vector<int64_t> yshape(nd);
  for (int d = 0; d < nd; ++d) {
    check_range(begin[d], 0, "pad", "pads_begin");
    check_range(end[d], 0, "pad", "pads_end");
    EV_CHECK(mode != PadMode::Reflect || (begin[d] < x.shape[d] && end[d] < x.shape[d]),
             "pad: reflect pads must be smaller than the padded dimension; dimension ", d, " of x ",
             x.shape_str(), " is padded by (", begin[d], ", ", end[d], ")");
    s.shape[d] = x.shape[d], s.pad_begin[d] = begin[d], s.pad_end[d] = end[d];
    yshape[d] = s.out_dim(d);
  }
  View y;
  py::object out = call.output(yshape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { pad_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? pad_ref : pad_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

py::object lrn(py::handle x_, int64_t size, float alpha, float beta, float bias, py::handle alloc,
               bool reference, std::uintptr_t stream) {
  Call call("lrn", alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  EV_CHECK(x.ndim() >= 2, "lrn: x must be [n, c, ...], got ", x.shape_str());
  check_range(size, 1, "lrn", "size");
  LrnShape s;
  s.n = x.shape[0], s.c = x.shape[1], s.size = size;
  for (int i = 2; i < x.ndim(); ++i) s.hw *= x.shape[i];
  s.alpha = alpha, s.beta = beta, s.bias = bias;
  View y;
  py::object out = call.output(x.shape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { lrn_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? lrn_ref : lrn_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

// Reduces over `axes`, a contiguous run of axes in any order (empty: all of them, as ONNX does).
py::object reduce(py::handle x_, std::vector<int64_t> axes, ReduceOp opk, bool keepdims,
                  py::handle alloc, bool reference, std::uintptr_t stream) {
  static const char* names[] = {"reduce_mean", "reduce_sum", "reduce_max", "reduce_min"};
  const char* op = names[static_cast<int>(opk)];
  Call call(op, alloc, reference, stream);
  View x = call.input(x_, "x", -1);
  const int nd = x.ndim();
  EV_CHECK(nd >= 1, op, ": x must have at least one dimension");
  std::vector<int64_t> ax;
  for (int64_t a : axes) ax.push_back(normalize_axis(a, nd, op));
  if (ax.empty())
    for (int i = 0; i < nd; ++i) ax.push_back(i);
  std::sort(ax.begin(), ax.end());
  for (size_t i = 1; i < ax.size(); ++i) {
    EV_CHECK(ax[i] != ax[i - 1], op, ": axis ", ax[i], " is given twice");
    EV_CHECK(ax[i] == ax[i - 1] + 1, op, ": axes ", shape_str(axes),
             " must be a contiguous run of axes (transpose first to reduce others)");
  }
  ReduceShape s;
  s.op = opk;
  std::vector<int64_t> yshape;
  for (int i = 0; i < nd; ++i) {
    const bool reduced = i >= ax.front() && i <= ax.back();
    if (i < ax.front()) s.outer *= x.shape[i];
    else if (reduced) s.dim *= x.shape[i];
    else s.inner *= x.shape[i];
    if (!reduced) yshape.push_back(x.shape[i]);
    else if (keepdims) yshape.push_back(1);
  }
  View y;
  py::object out = call.output(yshape, &y);
  if (call.cuda()) {
    EV_IF_CUDA(call.run([&] { reduce_cuda(s, call.dtype(), x.data, y.data, call.stream()); }));
  } else {
    call.run([&] { (call.reference() ? reduce_ref : reduce_cpu)(s, f32(x), f32(y)); });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

py::dict build_info() {
  py::dict d;
  d["version"] = EV_VERSION;
  d["build_type"] = EV_BUILD_TYPE;
  d["compiler"] = EV_CXX_COMPILER;
  d["cpu_arch_flags"] = EV_ARCH_FLAGS;
  d["sanitizers"] = bool(EV_SANITIZE);
  std::vector<std::string> simd;
#if defined(__AVX512F__)
  simd.push_back("AVX-512F");
#endif
#if defined(__AVX2__)
  simd.push_back("AVX2");
#endif
#if defined(__FMA__)
  simd.push_back("FMA");
#endif
#if defined(__AVX__) && !defined(__AVX2__)
  simd.push_back("AVX");
#endif
#if defined(__SSE4_2__) && !defined(__AVX__)
  simd.push_back("SSE4.2");
#endif
#if defined(__ARM_NEON)
  simd.push_back("NEON");
#endif
#if defined(__ARM_FEATURE_FMA)
  simd.push_back("FMA");
#endif
#if defined(__ARM_FEATURE_SVE)
  simd.push_back("SVE");
#endif
  d["simd_compiled"] = simd;
  std::vector<std::string> cpu;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) cpu.push_back("AVX-512F");
  if (__builtin_cpu_supports("avx2")) cpu.push_back("AVX2");
  if (__builtin_cpu_supports("fma")) cpu.push_back("FMA");
  if (__builtin_cpu_supports("avx")) cpu.push_back("AVX");
  if (__builtin_cpu_supports("sse4.2")) cpu.push_back("SSE4.2");
#elif defined(__aarch64__)
  cpu.push_back("NEON");  // mandatory on AArch64
#endif
  d["simd_cpu"] = cpu;
  d["openmp_max_threads"] = omp_get_max_threads();
  d["openmp_procs"] = omp_get_num_procs();
#ifdef EV_WITH_CUDA
  d["cuda"] = true;
  d["cuda_archs"] = EV_CUDA_ARCHS;
  d["cuda_compiler_version"] = EV_CUDA_COMPILER_VERSION;
  d["cuda_runtime_version"] = cuda_runtime_version();
  d["cuda_driver_version"] = cuda_driver_version();
  const char* why = nullptr;
  const int count = cuda_device_count(&why);
  py::list gpus;
  for (int i = 0; i < count; ++i) {
    CudaDeviceInfo info{};
    if (!cuda_device_info(i, &info)) continue;
    py::dict g;
    g["index"] = i;
    g["name"] = std::string(info.name);
    g["compute_capability"] = std::to_string(info.major) + "." + std::to_string(info.minor);
    g["multiprocessors"] = info.multiprocessors;
    g["memory_bytes"] = info.total_memory;
    gpus.append(g);
  }
  d["gpus"] = gpus;
  d["gpus_unavailable_reason"] = count == 0 && why ? py::object(py::str(why)) : py::object(py::none());
#else
  d["cuda"] = false;
  d["gpus"] = py::list();
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "edgevision kernels (C++ on the CPU, CUDA on NVIDIA GPUs). Use edgevision.ops.";
  m.attr("VERSION") = EV_VERSION;
#ifdef EV_WITH_CUDA
  m.attr("WITH_CUDA") = true;
#else
  m.attr("WITH_CUDA") = false;
#endif

  py::enum_<Act>(m, "Act")
      .value("NONE", Act::None).value("RELU", Act::ReLU).value("LEAKY_RELU", Act::LeakyReLU)
      .value("CLIP", Act::Clip).value("SIGMOID", Act::Sigmoid).value("TANH", Act::Tanh)
      .value("SILU", Act::SiLU).value("HARDSWISH", Act::HardSwish).value("GELU", Act::GELU)
      .value("HARDSIGMOID", Act::HardSigmoid);
  py::enum_<ShuffleMode>(m, "ShuffleMode").value("CRD", ShuffleMode::CRD).value("DCR", ShuffleMode::DCR);
  py::enum_<ResizeMode>(m, "ResizeMode")
      .value("NEAREST", ResizeMode::Nearest).value("BILINEAR", ResizeMode::Bilinear);
  py::enum_<CoordMode>(m, "CoordMode")
      .value("HALF_PIXEL", CoordMode::HalfPixel).value("PYTORCH_HALF_PIXEL", CoordMode::PytorchHalfPixel)
      .value("ALIGN_CORNERS", CoordMode::AlignCorners).value("ASYMMETRIC", CoordMode::Asymmetric);
  py::enum_<NearestMode>(m, "NearestMode")
      .value("ROUND_PREFER_FLOOR", NearestMode::RoundPreferFloor)
      .value("ROUND_PREFER_CEIL", NearestMode::RoundPreferCeil)
      .value("FLOOR", NearestMode::Floor).value("CEIL", NearestMode::Ceil);
  py::enum_<BinaryOp>(m, "BinaryOp")
      .value("ADD", BinaryOp::Add).value("SUB", BinaryOp::Sub).value("MUL", BinaryOp::Mul)
      .value("DIV", BinaryOp::Div);
  py::enum_<Interp>(m, "Interp").value("NEAREST", Interp::Nearest).value("BILINEAR", Interp::Bilinear);
  py::enum_<PadMode>(m, "PadMode")
      .value("CONSTANT", PadMode::Constant).value("REFLECT", PadMode::Reflect)
      .value("EDGE", PadMode::Edge);
  py::enum_<ReduceOp>(m, "ReduceOp")
      .value("MEAN", ReduceOp::Mean).value("SUM", ReduceOp::Sum).value("MAX", ReduceOp::Max)
      .value("MIN", ReduceOp::Min);

  // Every op: tensors first, then its parameters, then (alloc, reference, stream).
  m.def("conv2d", &conv2d);
  m.def("conv_transpose2d", &conv_transpose2d);
  m.def("max_pool2d", [](py::handle x, Pair k, Pair s, Quad p, Pair d, bool ceil, py::handle alloc,
                         bool ref, std::uintptr_t st) {
    return pool2d(true, x, k, s, p, d, ceil, false, alloc, ref, st);
  });
  m.def("avg_pool2d", [](py::handle x, Pair k, Pair s, Quad p, bool ceil, bool count_include_pad,
                         py::handle alloc, bool ref, std::uintptr_t st) {
    return pool2d(false, x, k, s, p, Pair{1, 1}, ceil, count_include_pad, alloc, ref, st);
  });
  m.def("global_avg_pool2d", [](py::handle x, py::handle alloc, bool ref, std::uintptr_t st) {
    return global_pool(false, x, alloc, ref, st);
  });
  m.def("global_max_pool2d", [](py::handle x, py::handle alloc, bool ref, std::uintptr_t st) {
    return global_pool(true, x, alloc, ref, st);
  });
  m.def("gemm", &gemm);
  m.def("pixel_shuffle", &pixel_shuffle);
  m.def("resize", &resize);
  m.def("softmax", &softmax);
  m.def("binary", &binary);
  m.def("activation", &activation);
  m.def("batch_norm", &batch_norm);
  m.def("concat", &concat);
  m.def("preprocess", &preprocess);
  m.def("postprocess_image", &postprocess_image);
  m.def("strided_copy", &strided_copy);
  m.def("transpose", &transpose);
  m.def("slice", &slice);
  m.def("expand", &expand);
  m.def("pad", &pad);
  m.def("lrn", &lrn);
  m.def("reduce", &reduce);

  bind_plan(m);

  m.def("build_info", &build_info, "How this extension was built and what it sees (see edgevision.info)");
  m.def("set_num_threads", [](int n) {
    EV_CHECK(n >= 1, "set_num_threads: n must be >= 1, got ", n);
    omp_set_num_threads(n);
  }, "Threads used by the CPU kernels (OpenMP), like torch.set_num_threads.");
  m.def("get_num_threads", [] { return omp_get_max_threads(); });
  m.def("cpu_peak_gflops", [](int threads) {
    EV_CHECK(threads >= 1 && threads <= 4096, "cpu_peak_gflops: threads must be in [1, 4096]");
    py::gil_scoped_release release;
    return cpu_peak_gflops(threads);
  }, "Measured FP32 FMA peak of this CPU in GFLOP/s with `threads` threads (a ~0.1 s microbenchmark).");
}
