// conv2d_dw_pw's kernel for small maps (dw_pw_blocked.cpp): an inverted-residual block (expand 1x1 ->
// depthwise -> projection 1x1) with the expanded channels in 16-channel blocks, split over the threads.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops.h"

namespace ev {
namespace cpu {

// Whether conv2d_dw_pw_cpu runs `d` here (AVX-512 builds; a shape test only, so packing at build and running
// agree whatever the thread count).
bool dw_pw_blocked(const DwPwShape& d);
// The expand, depthwise and projection weights in this kernel's layout (all three, from the plan's constants).
int64_t dw_pw_blocked_packed_floats(const DwPwShape& d);
void dw_pw_blocked_pack(const DwPwShape& d, const float* w_ex, const float* w_dw, const float* w_pw, float* packed);
// Bytes of workspace under omp_get_max_threads() threads.
size_t dw_pw_blocked_workspace(const DwPwShape& d);
void conv_dw_pw_blocked(const DwPwShape& d, const float* x, const float* b_ex, const float* b_dw, const float* b_pw,
                        const float* res, float* y, const Epilogue& e_pw, void* ws, const float* packed);

}  // namespace cpu
}  // namespace ev
