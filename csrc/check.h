// Error checking shared by every kernel and binding.
//
// EV_CHECK  : a user mistake (bad shape, bad argument). Throws std::invalid_argument, which pybind11
//             turns into ValueError, so a malformed call never crashes the process.
// EV_ASSERT : an internal invariant. Throws std::logic_error (RuntimeError in Python) naming the file
//             and line, because it means a bug in edgevision, not in the caller.
// EV_CUDA_CHECK : a CUDA runtime call that failed. Throws std::runtime_error with cudaGetErrorString.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace ev {
namespace detail {
// Message text without iostreams: std::to_string and snprintf format numbers through the C library.
// Why: built by a GPU machine's toolchain (/opt/gcc, gcc 13.3), _C carried its own copy of libstdc++'s
// stream code (the backtrace's frames were inside _C), and formatting an int through std::ostringstream
// there segfaulted inside the stream's locale facets. Numbers read as an
// ostream writes them: integers in decimal, floating point as %g, bool as 1 / 0.
inline void put(std::string& s, std::string_view v) { s.append(v.data(), v.size()); }
inline void put(std::string& s, const char* v) { s += v ? v : "(null)"; }
inline void put(std::string& s, char v) { s += v; }
inline void put(std::string& s, bool v) { s += v ? '1' : '0'; }
template <typename T>
inline std::enable_if_t<std::is_integral_v<T>> put(std::string& s, T v) {
  s += std::to_string(v);
}
template <typename T>
inline std::enable_if_t<std::is_floating_point_v<T>> put(std::string& s, T v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
  s += buf;
}
template <typename... Args>
inline std::string str(const Args&... args) {
  std::string s;
  (put(s, args), ...);
  return s;
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
