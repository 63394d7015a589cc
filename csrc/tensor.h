// A borrowed view of a tensor handed in from Python: a numpy array (read through the buffer
// protocol, so read-only arrays work) or any object speaking DLPack (torch, CuPy, JAX, a raw
// capsule). No copy is ever made; the view keeps the Python owner alive while it exists.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ops.h"

namespace ev {

enum class DeviceKind : int { CPU = 0, CUDA = 1 };

struct View {
  void* data = nullptr;
  DType dtype = DType::F32;
  DeviceKind device = DeviceKind::CPU;
  int device_id = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // in elements
  pybind11::object owner;  // keeps the array or DLPack capsule alive

  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t numel() const;
  std::string shape_str() const;
  std::string device_str() const;
};

const char* dtype_name(DType);

// Converts `obj` (argument `name` of op `op`) into a view. Raises TypeError for things that are not
// tensors, unsupported dtypes and devices, and ValueError for non-contiguous memory unless
// `allow_strided` (the caller then checks `strides` itself).
View to_view(pybind11::handle obj, const char* op, const char* name, bool allow_strided = false);

}  // namespace ev
