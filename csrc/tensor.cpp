// Tensor views from numpy arrays and DLPack capsules (legacy "dltensor" and "dltensor_versioned").
#include "tensor.h"

#include <pybind11/numpy.h>

#include "check.h"

namespace py = pybind11;

namespace {
// The DLPack ABI (https://dmlc.github.io/dlpack), declared here so the build needs no extra header.
struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLPackVersion {
  uint32_t major, minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  uint64_t flags;
  DLTensor dl_tensor;
};
constexpr int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;
constexpr uint8_t kDLInt = 0, kDLUInt = 1, kDLFloat = 2;

[[noreturn]] void type_error(const std::string& msg) { throw py::type_error(msg); }

bool contiguous(const std::vector<int64_t>& shape, const int64_t* strides_elems) {
  if (!strides_elems) return true;
  for (int64_t d : shape)
    if (d == 0) return true;  // empty: no memory is touched; the caller reports it as empty
  int64_t expected = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    // Strides of size-1 dimensions are meaningless; producers set them to anything.
    if (shape[i] != 1 && strides_elems[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

ev::View from_dltensor(const DLTensor& t, py::object owner, const char* op, const char* name,
                       bool allow_strided) {
  ev::View v;
  v.owner = std::move(owner);
  switch (t.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost: v.device = ev::DeviceKind::CPU; break;
    case kDLCUDA:
    case kDLCUDAManaged: v.device = ev::DeviceKind::CUDA; break;
    default:
      type_error(ev::detail::str(op, ": ", name, " lives on DLPack device type ",
                                 t.device.device_type, "; edgevision runs on the CPU and CUDA"));
  }
  v.device_id = t.device.device_id;
  if (t.dtype.lanes != 1) type_error(ev::detail::str(op, ": ", name, " has vector lanes"));
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32) v.dtype = ev::DType::F32;
  else if (t.dtype.code == kDLFloat && t.dtype.bits == 16) v.dtype = ev::DType::F16;
  else if (t.dtype.code == kDLUInt && t.dtype.bits == 8) v.dtype = ev::DType::U8;
  else
    type_error(ev::detail::str(op, ": ", name, " has DLPack dtype (code ", int(t.dtype.code),
                               ", bits ", int(t.dtype.bits),
                               "); expected float32, float16 or uint8"));
  EV_CHECK(t.ndim >= 0 && t.ndim <= 16, op, ": ", name, " has ", t.ndim, " dimensions");
  v.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides) {
    v.strides.assign(t.strides, t.strides + t.ndim);
  } else {
    v.strides.assign(t.ndim, 1);
    for (int i = t.ndim - 2; i >= 0; --i) v.strides[i] = v.strides[i + 1] * v.shape[i + 1];
  }
  EV_CHECK(allow_strided || contiguous(v.shape, v.strides.data()), op, ": ", name, " of shape ", v.shape_str(),
           " is not contiguous; pass a contiguous tensor (.contiguous() / np.ascontiguousarray)");
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  return v;
}
}  // namespace

namespace ev {

int64_t View::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string View::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string View::device_str() const {
  return device == DeviceKind::CPU ? std::string("cpu") : "cuda:" + std::to_string(device_id);
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "float32";
    case DType::F16: return "float16";
    case DType::U8: return "uint8";
  }
  return "?";
}

View to_view(py::handle obj, const char* op, const char* name, bool allow_strided) {
  if (obj.is_none()) type_error(detail::str(op, ": ", name, " is None; expected a tensor"));
  if (py::isinstance<py::array>(obj)) {
    auto arr = py::reinterpret_borrow<py::array>(obj);
    View v;
    v.owner = arr;
    const auto dt = arr.dtype();
    if (dt.is(py::dtype::of<float>())) v.dtype = DType::F32;
    else if (dt.kind() == 'f' && dt.itemsize() == 2) v.dtype = DType::F16;
    else if (dt.is(py::dtype::of<uint8_t>())) v.dtype = DType::U8;
    else
      type_error(detail::str(op, ": ", name, " has dtype ", std::string(py::str(dt)),
                             "; expected float32, float16 or uint8"));
    v.shape.assign(arr.shape(), arr.shape() + arr.ndim());
    v.strides.resize(arr.ndim());
    for (py::ssize_t i = 0; i < arr.ndim(); ++i) {
      EV_CHECK(arr.strides()[i] % arr.itemsize() == 0, op, ": ", name, " has unaligned strides");
      v.strides[i] = arr.strides()[i] / arr.itemsize();
    }
    EV_CHECK(allow_strided || contiguous(v.shape, v.strides.data()), op, ": ", name, " of shape ", v.shape_str(),
             " is not contiguous; pass a contiguous tensor (np.ascontiguousarray(", name,
             ") in numpy, .contiguous() in torch)");
    v.data = const_cast<void*>(arr.data());
    return v;
  }
  py::object capsule;
  if (PyCapsule_CheckExact(obj.ptr())) {
    capsule = py::reinterpret_borrow<py::object>(obj);
  } else if (py::hasattr(obj, "__dlpack__")) {
    try {
      capsule = obj.attr("__dlpack__")();
    } catch (py::error_already_set& e) {
      type_error(detail::str(op, ": ", name, " could not be exported through DLPack: ", e.what()));
    }
  } else {
    type_error(detail::str(op, ": ", name, " is a ", std::string(py::str(py::type::handle_of(obj))),
                           "; expected a numpy array or a DLPack tensor (torch, CuPy, ...)"));
  }
  const char* cname = PyCapsule_GetName(capsule.ptr());
  if (cname && std::string(cname) == "dltensor") {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
    EV_CHECK(m, op, ": ", name, ": empty DLPack capsule");
    return from_dltensor(m->dl_tensor, capsule, op, name, allow_strided);
  }
  if (cname && std::string(cname) == "dltensor_versioned") {
    auto* m = static_cast<DLManagedTensorVersioned*>(
        PyCapsule_GetPointer(capsule.ptr(), "dltensor_versioned"));
    EV_CHECK(m, op, ": ", name, ": empty DLPack capsule");
    EV_CHECK(m->version.major == 1, op, ": ", name, " uses DLPack ", m->version.major,
             ".x; edgevision reads 1.x");
    return from_dltensor(m->dl_tensor, capsule, op, name, allow_strided);
  }
  type_error(detail::str(op, ": ", name, " is a capsule that is not an unused DLPack tensor (name '",
                         cname ? cname : "", "')"));
}

}  // namespace ev
