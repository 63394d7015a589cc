// Error checking shared by every kernel and binding.
//
// EV_CHECK  : a user mistake (bad shape, bad argument). Throws std::invalid_argument, which pybind11
//             turns into ValueError, so a malformed call never crashes the process.
// EV_ASSERT : an internal invariant. Throws std::logic_error (RuntimeError in Python) naming the file
//             and line, because it means a bug in edgevision, not in the caller.
// EV_CUDA_CHECK : a CUDA runtime call that failed. Throws std::runtime_error with cudaGetErrorString.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ev {
namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
inline void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
template <typename... Args>
inline std::string str(const Args&... args) {
  std::ostringstream os;
  append(os, args...);
  return os.str();
}
}  // namespace detail
}  // namespace ev

#define EV_CHECK(cond, ...)                                            \
  do {                                                                 \
    if (!(cond)) throw std::invalid_argument(::ev::detail::str(__VA_ARGS__)); \
  } while (0)

#define EV_ASSERT(cond, ...)                                                              \
  do {                                                                                    \
    if (!(cond))                                                                          \
      throw std::logic_error(::ev::detail::str("edgevision internal error at ", __FILE__, \
                                               ":", __LINE__, ": " #cond " ", ##__VA_ARGS__)); \
  } while (0)

#ifdef __CUDACC__
#define EV_CUDA_CHECK(expr)                                                                 \
  do {                                                                                      \
    cudaError_t ev_err_ = (expr);                                                           \
    if (ev_err_ != cudaSuccess)                                                             \
      throw std::runtime_error(::ev::detail::str("CUDA error ", cudaGetErrorName(ev_err_), \
                                                 " (", cudaGetErrorString(ev_err_), ") in ", \
                                                 #expr, " at ", __FILE__, ":", __LINE__));  \
  } while (0)
// Kernel launches report configuration errors only through cudaGetLastError.
#define EV_CUDA_CHECK_LAUNCH() EV_CUDA_CHECK(cudaGetLastError())
#endif
