// Registers edgevision._C.Plan (plan_bindings.cpp); called from bindings.cpp's PYBIND11_MODULE.
#pragma once
#include <pybind11/pybind11.h>

namespace ev {
void bind_plan(pybind11::module_& m);
}  // namespace ev
