// TEMPORARY while the kernels land in parallel branches: weak definitions of every op in ops.h that
// throw "not implemented yet". A real (strong) definition overrides each. Deleted once all exist.
#include <stdexcept>
#include "ops.h"
namespace ev {
__attribute__((weak)) void conv2d_ref(const Conv2dShape&, const float* x, const float* w, const float* bias, const float* residual, float* y, const Epilogue&) { throw std::logic_error("conv2d_ref is not implemented yet"); }
__attribute__((weak)) size_t conv2d_cpu_workspace(const Conv2dShape&) { throw std::logic_error("conv2d_cpu_workspace is not implemented yet"); }
__attribute__((weak)) void conv2d_cpu(const Conv2dShape&, const float* x, const float* w, const float* bias, const float* residual, float* y, const Epilogue&, void* workspace) { throw std::logic_error("conv2d_cpu is not implemented yet"); }
__attribute__((weak)) void conv_transpose2d_ref(const ConvTranspose2dShape&, const float* x, const float* w, const float* bias, float* y, const Epilogue&) { throw std::logic_error("conv_transpose2d_ref is not implemented yet"); }
__attribute__((weak)) size_t conv_transpose2d_cpu_workspace(const ConvTranspose2dShape&) { throw std::logic_error("conv_transpose2d_cpu_workspace is not implemented yet"); }
__attribute__((weak)) void conv_transpose2d_cpu(const ConvTranspose2dShape&, const float* x, const float* w, const float* bias, float* y, const Epilogue&, void* workspace) { throw std::logic_error("conv_transpose2d_cpu is not implemented yet"); }
__attribute__((weak)) void max_pool2d_ref(const Pool2dShape&, const float* x, float* y) { throw std::logic_error("max_pool2d_ref is not implemented yet"); }
__attribute__((weak)) void max_pool2d_cpu(const Pool2dShape&, const float* x, float* y) { throw std::logic_error("max_pool2d_cpu is not implemented yet"); }
__attribute__((weak)) void avg_pool2d_ref(const Pool2dShape&, const float* x, float* y) { throw std::logic_error("avg_pool2d_ref is not implemented yet"); }
__attribute__((weak)) void avg_pool2d_cpu(const Pool2dShape&, const float* x, float* y) { throw std::logic_error("avg_pool2d_cpu is not implemented yet"); }
__attribute__((weak)) void global_avg_pool_ref(const GlobalPoolShape&, const float* x, float* y) { throw std::logic_error("global_avg_pool_ref is not implemented yet"); }
__attribute__((weak)) void global_avg_pool_cpu(const GlobalPoolShape&, const float* x, float* y) { throw std::logic_error("global_avg_pool_cpu is not implemented yet"); }
__attribute__((weak)) void global_max_pool_ref(const GlobalPoolShape&, const float* x, float* y) { throw std::logic_error("global_max_pool_ref is not implemented yet"); }
__attribute__((weak)) void global_max_pool_cpu(const GlobalPoolShape&, const float* x, float* y) { throw std::logic_error("global_max_pool_cpu is not implemented yet"); }
__attribute__((weak)) void gemm_ref(const GemmShape&, const float* a, const float* b, const float* bias, const float* residual, float* y, const Epilogue&) { throw std::logic_error("gemm_ref is not implemented yet"); }
__attribute__((weak)) size_t gemm_cpu_workspace(const GemmShape&) { throw std::logic_error("gemm_cpu_workspace is not implemented yet"); }
__attribute__((weak)) void gemm_cpu(const GemmShape&, const float* a, const float* b, const float* bias, const float* residual, float* y, const Epilogue&, void* workspace) { throw std::logic_error("gemm_cpu is not implemented yet"); }
__attribute__((weak)) void pixel_shuffle_ref(const PixelShuffleShape&, const float* x, float* y) { throw std::logic_error("pixel_shuffle_ref is not implemented yet"); }
__attribute__((weak)) void pixel_shuffle_cpu(const PixelShuffleShape&, const float* x, float* y) { throw std::logic_error("pixel_shuffle_cpu is not implemented yet"); }
__attribute__((weak)) void resize_ref(const ResizeShape&, const float* x, float* y) { throw std::logic_error("resize_ref is not implemented yet"); }
__attribute__((weak)) void resize_cpu(const ResizeShape&, const float* x, float* y) { throw std::logic_error("resize_cpu is not implemented yet"); }
__attribute__((weak)) void softmax_ref(const SoftmaxShape&, const float* x, float* y) { throw std::logic_error("softmax_ref is not implemented yet"); }
__attribute__((weak)) void softmax_cpu(const SoftmaxShape&, const float* x, float* y) { throw std::logic_error("softmax_cpu is not implemented yet"); }
__attribute__((weak)) void binary_ref(const BinaryShape&, const float* a, const float* b, float* y, const Epilogue&) { throw std::logic_error("binary_ref is not implemented yet"); }
__attribute__((weak)) void binary_cpu(const BinaryShape&, const float* a, const float* b, float* y, const Epilogue&) { throw std::logic_error("binary_cpu is not implemented yet"); }
__attribute__((weak)) void activation_ref(int64_t numel, const float* x, float* y, const Epilogue&) { throw std::logic_error("activation_ref is not implemented yet"); }
__attribute__((weak)) void activation_cpu(int64_t numel, const float* x, float* y, const Epilogue&) { throw std::logic_error("activation_cpu is not implemented yet"); }
__attribute__((weak)) void batch_norm_ref(const BatchNormShape&, const float* x, const float* gamma, const float* beta, const float* mean, const float* var, float* y, const Epilogue&) { throw std::logic_error("batch_norm_ref is not implemented yet"); }
__attribute__((weak)) void batch_norm_cpu(const BatchNormShape&, const float* x, const float* gamma, const float* beta, const float* mean, const float* var, float* y, const Epilogue&) { throw std::logic_error("batch_norm_cpu is not implemented yet"); }
__attribute__((weak)) void concat_ref(const ConcatShape&, const float* const* xs, float* y) { throw std::logic_error("concat_ref is not implemented yet"); }
__attribute__((weak)) void concat_cpu(const ConcatShape&, const float* const* xs, float* y) { throw std::logic_error("concat_cpu is not implemented yet"); }
__attribute__((weak)) void preprocess_ref(const PreprocessShape&, const uint8_t* src, float* dst) { throw std::logic_error("preprocess_ref is not implemented yet"); }
__attribute__((weak)) void preprocess_cpu(const PreprocessShape&, const uint8_t* src, float* dst) { throw std::logic_error("preprocess_cpu is not implemented yet"); }
__attribute__((weak)) void postprocess_image_ref(const PostprocessShape&, const float* src, uint8_t* dst) { throw std::logic_error("postprocess_image_ref is not implemented yet"); }
__attribute__((weak)) void postprocess_image_cpu(const PostprocessShape&, const float* src, uint8_t* dst) { throw std::logic_error("postprocess_image_cpu is not implemented yet"); }
#ifdef EV_WITH_CUDA
__attribute__((weak)) size_t conv2d_cuda_workspace(const Conv2dShape&, DType dt) { throw std::logic_error("conv2d_cuda_workspace is not implemented yet"); }
__attribute__((weak)) void conv2d_cuda(const Conv2dShape&, DType dt, const void* x, const void* w, const void* bias, const void* residual, void* y, const Epilogue&, void* workspace, Stream) { throw std::logic_error("conv2d_cuda is not implemented yet"); }
__attribute__((weak)) void conv_transpose2d_cuda(const ConvTranspose2dShape&, DType dt, const void* x, const void* w, const void* bias, void* y, const Epilogue&, Stream) { throw std::logic_error("conv_transpose2d_cuda is not implemented yet"); }
__attribute__((weak)) void max_pool2d_cuda(const Pool2dShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("max_pool2d_cuda is not implemented yet"); }
__attribute__((weak)) void avg_pool2d_cuda(const Pool2dShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("avg_pool2d_cuda is not implemented yet"); }
__attribute__((weak)) void global_avg_pool_cuda(const GlobalPoolShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("global_avg_pool_cuda is not implemented yet"); }
__attribute__((weak)) void global_max_pool_cuda(const GlobalPoolShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("global_max_pool_cuda is not implemented yet"); }
__attribute__((weak)) void gemm_cuda(const GemmShape&, DType dt, const void* a, const void* b, const void* bias, const void* residual, void* y, const Epilogue&, Stream) { throw std::logic_error("gemm_cuda is not implemented yet"); }
__attribute__((weak)) void pixel_shuffle_cuda(const PixelShuffleShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("pixel_shuffle_cuda is not implemented yet"); }
__attribute__((weak)) void resize_cuda(const ResizeShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("resize_cuda is not implemented yet"); }
__attribute__((weak)) void softmax_cuda(const SoftmaxShape&, DType dt, const void* x, void* y, Stream) { throw std::logic_error("softmax_cuda is not implemented yet"); }
__attribute__((weak)) void binary_cuda(const BinaryShape&, DType dt, const void* a, const void* b, void* y, const Epilogue&, Stream) { throw std::logic_error("binary_cuda is not implemented yet"); }
__attribute__((weak)) void activation_cuda(int64_t numel, DType dt, const void* x, void* y, const Epilogue&, Stream) { throw std::logic_error("activation_cuda is not implemented yet"); }
__attribute__((weak)) void batch_norm_cuda(const BatchNormShape&, DType dt, const void* x, const void* gamma, const void* beta, const void* mean, const void* var, void* y, const Epilogue&, Stream) { throw std::logic_error("batch_norm_cuda is not implemented yet"); }
__attribute__((weak)) void concat_cuda(const ConcatShape&, DType dt, const void* const* xs, void* y, Stream) { throw std::logic_error("concat_cuda is not implemented yet"); }
__attribute__((weak)) void preprocess_cuda(const PreprocessShape&, const uint8_t* src, DType dt, void* dst, Stream) { throw std::logic_error("preprocess_cuda is not implemented yet"); }
__attribute__((weak)) void postprocess_image_cuda(const PostprocessShape&, DType dt, const void* src, uint8_t* dst, Stream) { throw std::logic_error("postprocess_image_cuda is not implemented yet"); }
__attribute__((weak)) int cuda_runtime_version() { throw std::logic_error("cuda_runtime_version is not implemented yet"); }
__attribute__((weak)) int cuda_driver_version() { throw std::logic_error("cuda_driver_version is not implemented yet"); }
__attribute__((weak)) int cuda_device_count(const char** why) { throw std::logic_error("cuda_device_count is not implemented yet"); }
__attribute__((weak)) bool cuda_device_info(int index, CudaDeviceInfo* out) { throw std::logic_error("cuda_device_info is not implemented yet"); }
__attribute__((weak)) void cuda_set_device(int index) { throw std::logic_error("cuda_set_device is not implemented yet"); }
__attribute__((weak)) int cuda_current_device() { throw std::logic_error("cuda_current_device is not implemented yet"); }
#endif
}  // namespace ev
