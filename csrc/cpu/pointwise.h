// Helpers shared by the pointwise CPU kernels (elementwise, batch_norm, softmax, concat, preprocess):
// the size below which OpenMP threads cost more than they save, an even split of a flat index range
// over the threads of a parallel region, and compile-time dispatch on the activation so a loop is
// specialised once per Act instead of switching per element.
#pragma once
#include <omp.h>

#include <cstdint>
#include <type_traits>

#include "epilogue.h"

namespace ev {
namespace cpu {

// Waking the thread pool costs a few microseconds; memory-bound loops of fewer elements finish sooner
// on one core.
constexpr int64_t kMinParallel = 32768;

// The part [begin, end) of [0, total) that the calling thread of a parallel region owns.
inline void thread_range(int64_t total, int64_t* begin, int64_t* end) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t q = total / nt, r = total % nt;
  *begin = t * q + (t < r ? t : r);
  *end = *begin + q + (t < r ? 1 : 0);
}

template <Act A>
using ActC = std::integral_constant<Act, A>;

// Calls f(ActC<a>{}), so f can use the activation as a constant and the compiler drops the switch
// inside ev::activate.
template <class F>
inline void with_act(Act a, F&& f) {
  switch (a) {
    case Act::None: return f(ActC<Act::None>{});
    case Act::ReLU: return f(ActC<Act::ReLU>{});
    case Act::LeakyReLU: return f(ActC<Act::LeakyReLU>{});
    case Act::Clip: return f(ActC<Act::Clip>{});
    case Act::Sigmoid: return f(ActC<Act::Sigmoid>{});
    case Act::Tanh: return f(ActC<Act::Tanh>{});
    case Act::SiLU: return f(ActC<Act::SiLU>{});
    case Act::HardSwish: return f(ActC<Act::HardSwish>{});
    case Act::GELU: return f(ActC<Act::GELU>{});
    case Act::HardSigmoid: return f(ActC<Act::HardSigmoid>{});
  }
  return f(ActC<Act::None>{});
}

}  // namespace cpu
}  // namespace ev
