// Plan: validation of a spec into compact steps (shape structs of ops.h plus region-relative
// operand references), memory set-up, and the run loops for the CPU and CUDA. The contract, the
// spec format and the thread-safety rules are in plan.h.
#include "runtime/plan.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>

#include "check.h"

namespace ev {
namespace {

// The limits of bindings.cpp: every size stays below 2^31 so products of a few cannot overflow
// int64, tensors stay below 2^40 elements, and CUDA kernels index with 32-bit integers.
constexpr int64_t kMaxDim = int64_t(1) << 31;
constexpr int64_t kMaxNumel = int64_t(1) << 40;
constexpr int64_t kMaxCudaNumel = (int64_t(1) << 31) - 1;
constexpr int64_t kArenaAlign = 64;  // the spec's promise for arena offsets
constexpr int64_t kPoolAlign = 256;  // constants and CUDA staging buffers: cudaMalloc's alignment

// Operand regions: every operand is bases[region] + offset.
constexpr int kArena = 0, kConstants = 1, kFirstIO = 2;

enum class Op : int {
  Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, GlobalAvgPool, GlobalMaxPool, Gemm, MatMul,
  PixelShuffle, Resize, Softmax, Binary, Activation, BatchNorm, Concat, StridedCopy, Pad, Lrn,
  Reduce, Copy, Conv2dDwPw,
};

struct OpInfo {
  const char* name;
  Op op;
  int min_inputs, max_inputs;  // max -1: unbounded
  unsigned optional = 0;       // bit i: input i < min_inputs may still be -1 (absent)
};
constexpr OpInfo kOps[] = {
    {"conv2d", Op::Conv2d, 2, 4},          {"conv_transpose2d", Op::ConvTranspose2d, 2, 3},
    {"max_pool2d", Op::MaxPool2d, 1, 1},   {"avg_pool2d", Op::AvgPool2d, 1, 1},
    {"global_avg_pool", Op::GlobalAvgPool, 1, 1}, {"global_max_pool", Op::GlobalMaxPool, 1, 1},
    {"gemm", Op::Gemm, 2, 4},              {"matmul", Op::MatMul, 2, 2},
    {"pixel_shuffle", Op::PixelShuffle, 1, 1}, {"resize", Op::Resize, 1, 1},
    {"softmax", Op::Softmax, 1, 1},        {"binary", Op::Binary, 2, 2},
    {"activation", Op::Activation, 1, 1},  {"batch_norm", Op::BatchNorm, 5, 5},
    {"concat", Op::Concat, 1, -1},         {"strided_copy", Op::StridedCopy, 1, 1},
    {"pad", Op::Pad, 1, 1},                {"lrn", Op::Lrn, 1, 1},
    {"reduce", Op::Reduce, 1, 1},          {"copy", Op::Copy, 1, 1},
    {"conv2d_dw_pw", Op::Conv2dDwPw, 4, 8, 1u << 2},  // x, dw weight, [dw bias], pw weight, ...
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

std::vector<int64_t> dense_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> st(shape.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) st[i] = acc, acc *= shape[i];
  return st;
}

struct Ref {
  int region = -1;  // -1: an absent optional operand (nullptr)
  int64_t offset = 0;
};

// numpy matmul of [..., m, k] @ [..., k, n]: one gemm per output batch index, the operands' batch
// strides 0 along broadcast dims.
struct MatMulShape {
  GemmShape g;
  int nd = 0;
  int64_t batch[kMaxDims] = {};
  int64_t a_stride[kMaxDims] = {};
  int64_t b_stride[kMaxDims] = {};
  int64_t count = 1;
};

struct ConcatData {
  int64_t outer = 1, inner = 1;
  std::vector<int64_t> sizes;
  std::vector<const void*> ptrs;  // filled per run (CPU inputs move); guarded by the run mutex
};

struct Step {
  Op op;
  std::string label;  // "conv2d 'name'" for errors
  std::vector<Ref> in;
  Ref out;
  Epilogue epi;
  int64_t numel = 0;  // activation: elements; copy: bytes
  int64_t packed = -1;  // CPU conv2d / gemm with constant weights in the kernels' layout: floats into host_packed
  Pool2dShape pool{0};  // CPU conv2d: the max pool fused after it (conv2d_max_pool_cpu); n = 0: none
  std::variant<std::monostate, Conv2dShape, ConvTranspose2dShape, Pool2dShape, GlobalPoolShape,
               GemmShape, MatMulShape, PixelShuffleShape, ResizeShape, SoftmaxShape, BinaryShape,
               BatchNormShape, ConcatData, StridedCopyShape, PadShape, LrnShape, ReduceShape, DwPwShape>
      shape;
};

// A value once resolved: where its bytes are.
struct Val {
  int64_t numel = 0, bytes = 0;
  int region = -1;
  int64_t offset = 0;
  int root = -1;    // the non-alias value whose bytes these are
  int writer = -1;  // the step that writes it (root values only)
  int state = 0;    // 0 unresolved, 1 being resolved (alias cycle detection), 2 resolved
};

// Sets the calling thread's OpenMP thread count for a scope.
class OmpThreads {
 public:
  explicit OmpThreads(int n) : prev_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(prev_); }

 private:
  int prev_;
};

struct HostFree {
  void operator()(void* p) const { ::operator delete(p, std::align_val_t(kArenaAlign)); }
};
using HostBuffer = std::unique_ptr<void, HostFree>;

HostBuffer host_alloc(int64_t bytes) {
  if (bytes <= 0) return HostBuffer();
  void* p = ::operator new(static_cast<size_t>(bytes), std::align_val_t(kArenaAlign), std::nothrow);
  if (!p) throw std::bad_alloc();
  return HostBuffer(p);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Plan::Impl {
  DType dt = DType::F32;
  int64_t esize = 4;
  bool cuda = false;
  int device_id = 0;
  int threads = 1;
  int64_t arena_bytes = 0, workspace_bytes = 0, constant_bytes = 0;
  std::vector<PlanTensor> inputs, outputs;
  std::vector<Step> steps;
  std::vector<char*> bases;  // per region

  mutable std::mutex mu;
  bool profiling = false;
  bool profiled = false;      // a profiled run has filled `times`
  std::vector<double> times;  // preallocated so a profiled run allocates nothing

  HostBuffer host_arena, host_constants, host_workspace;
  HostBuffer host_packed;  // conv / gemm weights in the kernels' layout, made once here (packed_floats)
  int64_t packed_bytes = 0;

#ifdef EV_WITH_CUDA
  void* dev_arena = nullptr;
  void* dev_constants = nullptr;
  void* dev_workspace = nullptr;
  void* dev_io = nullptr;  // staging copies of the inputs and outputs
  Stream stream = nullptr;
  void* legacy_done = nullptr;  // orders a stream-0 run after the legacy default stream
  void* run_done = nullptr;     // the previous run's end, waited on by the next run
  std::vector<void*> step_events;  // profiling: boundaries before and after every step
  void* graph = nullptr;
  bool graph_failed = false;
  int64_t runs = 0;
#endif

  explicit Impl(const PlanSpec& spec);
  ~Impl();
  void build(const PlanSpec& spec, std::vector<Val>& vals);
  void allocate(const PlanSpec& spec, const std::vector<int64_t>& const_offsets);
  void run_cpu(const void* const* in, void* const* out);
  void exec_cpu(Step& s, void* ws);
#ifdef EV_WITH_CUDA
  void run_cuda(const void* const* in, void* const* out, Stream user);
  void exec_cuda(Step& s, Stream st);
  void release_cuda() noexcept;
#endif
};

namespace {

// Resolves value `id` (aliases through their bases), filling vals[id].
class ValueResolver {
 public:
  ValueResolver(const PlanSpec& spec, std::vector<Val>& vals, int64_t esize, bool cuda,
                const std::vector<int64_t>& const_offsets)
      : spec_(spec), vals_(vals), esize_(esize), cuda_(cuda), const_offsets_(const_offsets) {}

  // Alias chains are walked iteratively: a spec from an untrusted model may chain many of them.
  void resolve(int id) {
    std::vector<int> chain;
    int cur = id;
    while (vals_[cur].state != 2 && spec_.values[cur].kind == ValueKind::Alias) {
      if (vals_[cur].state == 1) fail(cur, "is part of a cycle of aliases");
      vals_[cur].state = 1;
      chain.push_back(cur);
      const int64_t base = need(cur, spec_.values[cur].index, "index");
      if (base < 0 || base >= static_cast<int64_t>(vals_.size()) || base == cur)
        fail(cur, "is an alias of value ", base, "; expected another value id in [0, ", vals_.size(), ")");
      cur = static_cast<int>(base);
    }
    if (vals_[cur].state != 2) resolve_root(cur);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) resolve_alias(*it);
  }

 private:
  template <typename... A>
  [[noreturn]] void fail(int id, const A&... a) const {
    throw std::invalid_argument(
        detail::str("plan value ", id, " ('", spec_.values[id].name, "') ", a...));
  }

  void resolve_root(int id) {
    Val& v = vals_[id];
    const ValueSpec& s = spec_.values[id];
    check_shape(id, s);
    v.bytes = v.numel * esize_;
    v.root = id;
    switch (s.kind) {
      case ValueKind::Arena: {
        const int64_t off = need(id, s.offset, "offset");
        if (off < 0 || off % kArenaAlign != 0)
          fail(id, "has arena offset ", off, "; expected a non-negative multiple of ", kArenaAlign);
        if (v.bytes > spec_.arena_bytes || off > spec_.arena_bytes - v.bytes)
          fail(id, "occupies bytes [", off, ", ", off + v.bytes, ") of an arena of ",
               spec_.arena_bytes, " bytes");
        v.region = kArena, v.offset = off;
        break;
      }
      case ValueKind::Constant: {
        const int64_t k = need(id, s.index, "index");
        if (k < 0 || k >= static_cast<int64_t>(spec_.constants.size()))
          fail(id, "refers to constant ", k, " of ", spec_.constants.size());
        if (spec_.constants[k].shape != s.shape)
          fail(id, "has shape ", shape_str(s.shape), " but constant ", k, " has shape ",
               shape_str(spec_.constants[k].shape));
        v.region = kConstants, v.offset = const_offsets_[k];
        break;
      }
      case ValueKind::Input:
      case ValueKind::Output: {
        const bool is_in = s.kind == ValueKind::Input;
        const auto& list = is_in ? spec_.inputs : spec_.outputs;
        const int64_t k = need(id, s.index, "index");
        if (k < 0 || k >= static_cast<int64_t>(list.size()) || list[k] != id)
          fail(id, "is ", is_in ? "input " : "output ", k, " but spec['", is_in ? "inputs" : "outputs",
               "'][", k, "] is not this value");
        const int nin = static_cast<int>(spec_.inputs.size());
        v.region = kFirstIO + (is_in ? 0 : nin) + static_cast<int>(k), v.offset = 0;
        break;
      }
      default: fail(id, "has an unknown kind");
    }
    v.state = 2;
  }

  void resolve_alias(int id) {
    Val& v = vals_[id];
    const ValueSpec& s = spec_.values[id];
    check_shape(id, s);
    v.bytes = v.numel * esize_;
    const int64_t base = *s.index;  // checked by resolve()
    const int64_t off = need(id, s.offset, "offset");
    const Val& b = vals_[base];
    if (off < 0 || off % esize_ != 0)
      fail(id, "has alias offset ", off, "; expected a non-negative multiple of the element size ", esize_);
    if (v.bytes > b.bytes || off > b.bytes - v.bytes)
      fail(id, "occupies bytes [", off, ", ", off + v.bytes, ") of its base value ", base, " ('",
           spec_.values[base].name, "') of ", b.bytes, " bytes");
    v.region = b.region, v.offset = b.offset + off, v.root = b.root;
    v.state = 2;
  }
  int64_t need(int id, const std::optional<int64_t>& f, const char* key) const {
    if (!f) fail(id, "has no '", key, "'");
    return *f;
  }
  void check_shape(int id, const ValueSpec& s) {
    if (s.shape.size() > static_cast<size_t>(kMaxDims))
      fail(id, "has shape ", shape_str(s.shape), "; at most ", kMaxDims, " dimensions are supported");
    int64_t numel = 1;
    for (int64_t d : s.shape) {
      if (d < 1 || d >= kMaxDim) fail(id, "has shape ", shape_str(s.shape), "; dims must be in [1, 2^31)");
      if (numel > kMaxNumel / d) fail(id, "has shape ", shape_str(s.shape), ", too many elements");
      numel *= d;
    }
    if (cuda_ && numel > kMaxCudaNumel)
      fail(id, "has ", numel, " elements; CUDA kernels take at most 2^31 - 1");
    vals_[id].numel = numel;
  }

  const PlanSpec& spec_;
  std::vector<Val>& vals_;
  int64_t esize_;
  bool cuda_;
  const std::vector<int64_t>& const_offsets_;
};

// The bytes step t writes (writes[t]), for the data-flow check.
struct Write {
  int region;
  int64_t begin, end;
};

// Validates one step and lowers it to a Step, checking its reads against the earlier writes.
class StepBuilder {
 public:
  StepBuilder(const StepSpec& s, int index, const PlanSpec& spec, std::vector<Val>& vals,
              const std::vector<Write>& writes)
      : s_(s), index_(index), spec_(spec), vals_(vals), writes_(writes), used_(s.attrs.size(), false) {}

  template <typename... A>
  [[noreturn]] void fail(const A&... a) const {
    throw std::invalid_argument(
        detail::str("plan step ", index_, " (", s_.op, " '", s_.name, "'): ", a...));
  }

  Step build() {
    const OpInfo* info = nullptr;
    for (const OpInfo& o : kOps)
      if (s_.op == o.name) info = &o;
    if (!info) {
      std::string names;
      for (const OpInfo& o : kOps) names += (names.empty() ? "" : ", ") + std::string(o.name);
      fail("unknown op; the plan runs ", names);
    }
    const int nin = static_cast<int>(s_.inputs.size());
    if (nin < info->min_inputs || (info->max_inputs >= 0 && nin > info->max_inputs)) {
      if (info->max_inputs < 0) fail("takes at least ", info->min_inputs, " inputs, got ", nin);
      if (info->min_inputs == info->max_inputs) fail("takes ", info->min_inputs, " inputs, got ", nin);
      fail("takes ", info->min_inputs, " to ", info->max_inputs, " inputs, got ", nin);
    }
    for (int i = 0; i < nin; ++i) {
      const int64_t id = s_.inputs[i];
      const bool optional = i >= info->min_inputs || (info->optional >> i & 1u);
      if (id == -1 && optional) continue;
      if (id < 0 || id >= static_cast<int64_t>(vals_.size()))
        fail("input ", i, " is value ", id, "; expected a value id in [0, ", vals_.size(), ")",
             optional ? " or -1" : "");
    }
    if (s_.outputs.size() != 1) fail("has ", s_.outputs.size(), " outputs; every op has exactly 1");
    const int64_t yid = s_.outputs[0];
    if (yid < 0 || yid >= static_cast<int64_t>(vals_.size()))
      fail("output is value ", yid, "; expected a value id in [0, ", vals_.size(), ")");

    step_.op = info->op;
    step_.label = detail::str(s_.op, " '", s_.name, "'");
    for (int i = 0; i < nin; ++i) step_.in.push_back(ref(s_.inputs[i]));
    step_.out = ref(yid);
    lower();
    for (size_t i = 0; i < used_.size(); ++i)
      if (!used_[i]) {
        std::string known;
        for (const char* k : known_) known += (known.empty() ? "" : ", ") + std::string(k);
        fail("unknown attribute '", s_.attrs[i].first, "'; ", s_.op, " takes ",
             known.empty() ? "none" : known);
      }
    check_data_flow();
    return std::move(step_);
  }

 private:
  // --- operands -------------------------------------------------------------------------------
  Ref ref(int64_t id) const {
    if (id < 0) return Ref{};
    return Ref{vals_[id].region, vals_[id].offset};
  }
  const std::vector<int64_t>& shape_of(int64_t id) const { return spec_.values[id].shape; }
  const std::vector<int64_t>& x(int i) const { return shape_of(s_.inputs[i]); }
  const std::vector<int64_t>& y() const { return shape_of(s_.outputs[0]); }
  bool present(int i) const { return i < static_cast<int>(s_.inputs.size()) && s_.inputs[i] >= 0; }
  std::string vname(int64_t id) const { return "'" + spec_.values[id].name + "'"; }

  void rank(int i, const char* what, size_t r) const {
    if (x(i).size() != r)
      fail(what, " ", vname(s_.inputs[i]), " must have ", r, " dimensions, got ", shape_str(x(i)));
  }
  void rank_at_least(int i, const char* what, size_t r) const {
    if (x(i).size() < r)
      fail(what, " ", vname(s_.inputs[i]), " must have at least ", r, " dimensions, got ",
           shape_str(x(i)));
  }
  void expect(int i, const char* what, const std::vector<int64_t>& want) const {
    if (x(i) != want)
      fail(what, " ", vname(s_.inputs[i]), " must have shape ", shape_str(want), ", got ",
           shape_str(x(i)));
  }
  void expect_out(const std::vector<int64_t>& want) const {
    if (y() != want)
      fail("output ", vname(s_.outputs[0]), " must have shape ", shape_str(want), ", got ",
           shape_str(y()));
  }
  int64_t numel_in(int i) const { return vals_[s_.inputs[i]].numel; }
  int64_t numel_out() const { return vals_[s_.outputs[0]].numel; }

  // --- attributes -----------------------------------------------------------------------------
  const AttrValue* find(const char* key) {
    known_.push_back(key);
    for (size_t i = 0; i < s_.attrs.size(); ++i)
      if (s_.attrs[i].first == key) {
        used_[i] = true;
        return &s_.attrs[i].second;
      }
    return nullptr;
  }
  static std::string describe(const AttrValue& v) {
    struct V {
      std::string operator()(bool b) const { return b ? "True" : "False"; }
      std::string operator()(int64_t i) const { return "the int " + std::to_string(i); }
      std::string operator()(double d) const { return detail::str("the float ", d); }
      std::string operator()(const std::string& s) const { return "the string '" + s + "'"; }
      std::string operator()(const std::vector<int64_t>& l) const { return "the list " + shape_str(l); }
    };
    return std::visit(V{}, v);
  }
  int64_t get_int(const char* key, int64_t lo, int64_t hi, std::optional<int64_t> dflt = {}) {
    const AttrValue* a = find(key);
    if (!a) {
      if (dflt) return *dflt;
      fail("missing attribute '", key, "' (an int)");
    }
    const int64_t* v = std::get_if<int64_t>(a);
    if (!v) fail("attribute '", key, "' must be an int, got ", describe(*a));
    if (*v < lo || *v >= hi) fail("attribute '", key, "' must be in [", lo, ", ", hi, "), got ", *v);
    return *v;
  }
  std::vector<int64_t> get_ints(const char* key, size_t n, int64_t lo, int64_t hi) {
    const AttrValue* a = find(key);
    if (!a) fail("missing attribute '", key, "' (a list of ", n, " ints)");
    const auto* v = std::get_if<std::vector<int64_t>>(a);
    if (!v || v->size() != n) fail("attribute '", key, "' must be a list of ", n, " ints, got ", describe(*a));
    for (int64_t e : *v)
      if (e < lo || e >= hi)
        fail("attribute '", key, "' = ", shape_str(*v), ": every entry must be in [", lo, ", ", hi, ")");
    return *v;
  }
  bool get_bool(const char* key, std::optional<bool> dflt = {}) {
    const AttrValue* a = find(key);
    if (!a) {
      if (dflt) return *dflt;
      fail("missing attribute '", key, "' (a bool)");
    }
    if (const bool* b = std::get_if<bool>(a)) return *b;
    const int64_t* i = std::get_if<int64_t>(a);
    if (!i || (*i != 0 && *i != 1)) fail("attribute '", key, "' must be a bool, got ", describe(*a));
    return *i == 1;
  }
  double get_float(const char* key, std::optional<double> dflt = {}) {
    const AttrValue* a = find(key);
    if (!a) {
      if (dflt) return *dflt;
      fail("missing attribute '", key, "' (a float)");
    }
    if (const double* d = std::get_if<double>(a)) return *d;
    if (const int64_t* i = std::get_if<int64_t>(a)) return static_cast<double>(*i);
    fail("attribute '", key, "' must be a float, got ", describe(*a));
  }
  float get_finite(const char* key, double lo, std::optional<double> dflt = {}) {
    const double v = get_float(key, dflt);
    if (!std::isfinite(v) || v < lo || v > std::numeric_limits<float>::max())
      fail("attribute '", key, "' must be a finite float >= ", lo, ", got ", v);
    return static_cast<float>(v);
  }
  // 0 (out / in) or a factor in [2^-16, 2^16], the range that keeps source coordinates finite.
  float get_scale(const char* key) {
    const float v = get_finite(key, 0.0);
    if (v != 0.f && (v < 1.f / 65536 || v > 65536.f))
      fail("attribute '", key, "' must be 0 (output / input) or in [2^-16, 2^16], got ", v);
    return v;
  }
  int get_choice(const char* key, std::initializer_list<const char*> choices,
                 std::optional<int> dflt = {}) {
    const AttrValue* a = find(key);
    if (!a) {
      if (dflt) return *dflt;
      fail("missing attribute '", key, "' (a string)");
    }
    const std::string* v = std::get_if<std::string>(a);
    int k = 0;
    std::string names;
    for (const char* c : choices) {
      if (v && *v == c) return k;
      names += (k++ ? ", '" : "'") + std::string(c) + "'";
    }
    fail("attribute '", key, "' must be one of ", names, "; got ", describe(*a));
  }
  // gemm names them act_alpha / act_beta (as edgevision.ops.gemm does): its "alpha" is the scale.
  Epilogue get_epilogue(const char* alpha_key = "alpha", const char* beta_key = "beta") {
    Epilogue e = get_act("act", alpha_key, beta_key);
    e.residual_after_act = get_bool("residual_after_act", false);
    return e;
  }
  Epilogue get_act(const char* act_key, const char* alpha_key, const char* beta_key) {
    Epilogue e;
    // Same order as enum Act.
    e.act = static_cast<Act>(get_choice(act_key, {"none", "relu", "leaky_relu", "clip", "sigmoid", "tanh",
                                                "silu", "hardswish", "gelu", "hardsigmoid"}, 0));
    const bool uses_alpha = e.act == Act::LeakyReLU || e.act == Act::Clip || e.act == Act::HardSigmoid;
    const bool uses_beta = e.act == Act::Clip || e.act == Act::HardSigmoid;
    e.alpha = static_cast<float>(get_float(alpha_key, uses_alpha ? std::optional<double>() : 0.0));
    e.beta = static_cast<float>(get_float(beta_key, uses_beta ? std::optional<double>() : 0.0));
    return e;
  }

  // --- ops ------------------------------------------------------------------------------------
  void lower() {
    switch (step_.op) {
      case Op::Conv2d: return conv2d();
      case Op::ConvTranspose2d: return conv_transpose2d();
      case Op::MaxPool2d:
      case Op::AvgPool2d: return pool2d(step_.op == Op::MaxPool2d);
      case Op::GlobalAvgPool:
      case Op::GlobalMaxPool: return global_pool();
      case Op::Gemm: return gemm();
      case Op::MatMul: return matmul();
      case Op::PixelShuffle: return pixel_shuffle();
      case Op::Resize: return resize();
      case Op::Softmax: return softmax();
      case Op::Binary: return binary();
      case Op::Activation: return activation();
      case Op::BatchNorm: return batch_norm();
      case Op::Concat: return concat();
      case Op::StridedCopy: return strided_copy();
      case Op::Pad: return pad();
      case Op::Lrn: return lrn();
      case Op::Reduce: return reduce();
      case Op::Copy: return copy();
      case Op::Conv2dDwPw: return conv2d_dw_pw();
    }
  }

  // The conv2d of an input of shape `in` (x's when not given) and weight (input w) with the attrs
  // stride, pads, dilation and groups (depthwise: groups = the input channels, not an attr), checked
  // against the weight's shape.
  Conv2dShape conv_shape(int w, bool depthwise, std::vector<int64_t> in = {}) {
    rank(0, "x", 4);
    rank(w, "weight", 4);
    if (in.empty()) in = x(0);
    const auto st = get_ints("stride", 2, 1, kMaxDim);
    const auto pads = get_ints("pads", 4, 0, kMaxDim);
    const auto dil = get_ints("dilation", 2, 1, kMaxDim);
    Conv2dShape s;
    s.n = in[0], s.c = in[1], s.h = in[2], s.w = in[3];
    s.groups = depthwise ? s.c : get_int("groups", 1, kMaxDim);
    s.k = x(w)[0], s.r = x(w)[2], s.s = x(w)[3];
    s.stride_h = st[0], s.stride_w = st[1];
    s.pad_t = pads[0], s.pad_l = pads[1], s.pad_b = pads[2], s.pad_r = pads[3];
    s.dil_h = dil[0], s.dil_w = dil[1];
    if (s.c % s.groups != 0 || s.k % s.groups != 0)
      fail("groups=", s.groups, " must divide the input channels (", s.c, ") and the output channels (",
           s.k, ")");
    expect(w, "weight", {s.k, s.c / s.groups, s.r, s.s});
    if (s.out_h() < 1 || s.out_w() < 1)
      fail("the padded input ", shape_str(in), " is smaller than the dilated kernel ", shape_str(x(w)));
    return s;
  }

  // Optional attrs max_pool = [kh, kw], max_pool_stride = [sh, sw] (default: the kernel) and max_pool_pads =
  // [t, l, b, r] (default 0, each under the kernel): a max pool after the epilogue, floor rounding, no dilation
  // (CPU only; the residual has the conv's output shape).
  void conv2d() {
    const Conv2dShape s = conv_shape(1, false);
    const std::vector<int64_t> ys{s.n, s.k, s.out_h(), s.out_w()};
    if (find("max_pool")) {
      if (spec_.device != "cpu") fail("max_pool runs on the CPU only (on CUDA, run a max_pool2d step after it)");
      const auto k = get_ints("max_pool", 2, 1, kMaxDim);
      const auto st = find("max_pool_stride") ? get_ints("max_pool_stride", 2, 1, kMaxDim) : k;
      const auto pads = find("max_pool_pads") ? get_ints("max_pool_pads", 4, 0, kMaxDim)
                                              : std::vector<int64_t>(4, 0);
      Pool2dShape& p = step_.pool;
      p.n = ys[0], p.c = ys[1], p.h = ys[2], p.w = ys[3];
      p.kh = k[0], p.kw = k[1], p.stride_h = st[0], p.stride_w = st[1];
      p.pad_t = pads[0], p.pad_l = pads[1], p.pad_b = pads[2], p.pad_r = pads[3];
      if (p.pad_t >= p.kh || p.pad_b >= p.kh || p.pad_l >= p.kw || p.pad_r >= p.kw)
        fail("max_pool_pads ", shape_str(pads), " must be smaller than the max_pool kernel ", shape_str(k));
      if (p.out_h() < 1 || p.out_w() < 1)
        fail("max_pool ", shape_str(k), " is larger than the padded conv output ", shape_str(ys));
      expect_out({s.n, s.k, p.out_h(), p.out_w()});
    } else {
      expect_out(ys);
    }
    if (present(2)) expect(2, "bias", {s.k});
    if (present(3)) expect(3, "residual", ys);
    step_.epi = get_epilogue();
    step_.shape = s;
  }

  // Inputs x, dw weight, dw bias, pw weight, pw bias, residual, expand weight, expand bias; the
  // depthwise's attrs are conv2d's (groups: its input channels) with its epilogue as dw_act / dw_alpha /
  // dw_beta, the expand conv's epilogue ex_act / ex_alpha / ex_beta, the 1x1 conv's the usual names.
  void conv2d_dw_pw() {
    if (spec_.device != "cpu") fail("runs on the CPU only (on CUDA, run the convs as conv2d steps)");
    DwPwShape d;
    rank(0, "x", 4);
    std::vector<int64_t> dw_in = x(0);
    if (present(7) && !present(6)) fail("has an expand bias (input 7) but no expand weight (input 6)");
    if (present(6)) {
      d.expand = true;
      rank(6, "expand weight", 4);
      Conv2dShape& e = d.ex;
      e.n = x(0)[0], e.c = x(0)[1], e.h = x(0)[2], e.w = x(0)[3], e.k = x(6)[0];
      expect(6, "expand weight", {e.k, e.c, 1, 1});
      if (present(7)) expect(7, "expand bias", {e.k});
      d.ex_epi = get_act("ex_act", "ex_alpha", "ex_beta");
      dw_in[1] = e.k;
    }
    d.dw = conv_shape(1, true, dw_in);
    if (present(2)) expect(2, "depthwise bias", {d.dw.k});
    d.dw_epi = get_act("dw_act", "dw_alpha", "dw_beta");
    rank(3, "pointwise weight", 4);
    Conv2dShape& p = d.pw;
    p.n = d.dw.n, p.c = d.dw.k, p.h = d.dw.out_h(), p.w = d.dw.out_w(), p.k = x(3)[0];
    expect(3, "pointwise weight", {p.k, p.c, 1, 1});
    const std::vector<int64_t> ys{p.n, p.k, p.h, p.w};
    expect_out(ys);
    if (present(4)) expect(4, "pointwise bias", {p.k});
    if (present(5)) expect(5, "residual", ys);
    step_.epi = get_epilogue();
    step_.shape = d;
  }

  void conv_transpose2d() {
    rank(0, "x", 4);
    rank(1, "weight", 4);
    const auto st = get_ints("stride", 2, 1, kMaxDim);
    const auto pads = get_ints("pads", 4, 0, kMaxDim);
    const auto op = get_ints("output_padding", 2, 0, kMaxDim);
    const auto dil = get_ints("dilation", 2, 1, kMaxDim);
    ConvTranspose2dShape s;
    s.groups = get_int("groups", 1, kMaxDim);
    s.n = x(0)[0], s.c = x(0)[1], s.h = x(0)[2], s.w = x(0)[3];
    s.k = x(1)[1] * s.groups, s.r = x(1)[2], s.s = x(1)[3];
    s.stride_h = st[0], s.stride_w = st[1];
    s.pad_t = pads[0], s.pad_l = pads[1], s.pad_b = pads[2], s.pad_r = pads[3];
    s.out_pad_h = op[0], s.out_pad_w = op[1];
    s.dil_h = dil[0], s.dil_w = dil[1];
    if (s.c % s.groups != 0) fail("groups=", s.groups, " must divide the input channels (", s.c, ")");
    if (x(1)[0] != s.c)
      fail("weight must have shape [in_channels, out_channels / groups, kh, kw] with in_channels = ",
           s.c, ", got ", shape_str(x(1)));
    if (s.out_pad_h >= std::max(s.stride_h, s.dil_h) || s.out_pad_w >= std::max(s.stride_w, s.dil_w))
      fail("output_padding must be smaller than stride or dilation");
    if (s.out_h() < 1 || s.out_w() < 1) fail("padding removes the whole output");
    expect_out({s.n, s.k, s.out_h(), s.out_w()});
    if (present(2)) expect(2, "bias", {s.k});
    Epilogue e = get_epilogue();
    if (e.residual_after_act) fail("residual_after_act needs a residual input, which conv_transpose2d has not");
    step_.epi = e;
    step_.shape = s;
  }

  void pool2d(bool is_max) {
    rank(0, "x", 4);
    const auto k = get_ints("kernel", 2, 1, kMaxDim);
    const auto st = get_ints("stride", 2, 1, kMaxDim);
    const auto pads = get_ints("pads", 4, 0, kMaxDim);
    Pool2dShape s;
    if (is_max) {
      const auto dil = get_ints("dilation", 2, 1, kMaxDim);
      s.dil_h = dil[0], s.dil_w = dil[1];
    } else {
      s.count_include_pad = get_bool("count_include_pad");
    }
    s.ceil_mode = get_bool("ceil_mode");
    s.n = x(0)[0], s.c = x(0)[1], s.h = x(0)[2], s.w = x(0)[3];
    s.kh = k[0], s.kw = k[1];
    s.stride_h = st[0], s.stride_w = st[1];
    s.pad_t = pads[0], s.pad_l = pads[1], s.pad_b = pads[2], s.pad_r = pads[3];
    // As in bindings.cpp: an average window entirely in padding would divide by zero.
    if (!is_max && (s.pad_t >= s.kh || s.pad_b >= s.kh || s.pad_l >= s.kw || s.pad_r >= s.kw))
      fail("pads must be smaller than the kernel, so no window lies entirely in padding");
    if (s.out_h() < 1 || s.out_w() < 1)
      fail("the padded input ", shape_str(x(0)), " is smaller than the kernel");
    expect_out({s.n, s.c, s.out_h(), s.out_w()});
    step_.shape = s;
  }

  void global_pool() {
    rank(0, "x", 4);
    GlobalPoolShape s{x(0)[0], x(0)[1], x(0)[2], x(0)[3]};
    expect_out({s.n, s.c, 1, 1});
    step_.shape = s;
  }

  void gemm() {
    rank(0, "a", 2);
    rank(1, "b", 2);
    GemmShape s;
    s.trans_a = get_bool("trans_a");
    s.trans_b = get_bool("trans_b");
    s.alpha = static_cast<float>(get_float("alpha"));
    s.m = s.trans_a ? x(0)[1] : x(0)[0];
    s.k = s.trans_a ? x(0)[0] : x(0)[1];
    s.n = s.trans_b ? x(1)[0] : x(1)[1];
    const int64_t kb = s.trans_b ? x(1)[1] : x(1)[0];
    if (kb != s.k)
      fail("inner dimensions differ: a ", shape_str(x(0)), s.trans_a ? " (transposed)" : "", " has k = ",
           s.k, ", b ", shape_str(x(1)), s.trans_b ? " (transposed)" : "", " has k = ", kb);
    expect_out({s.m, s.n});
    if (present(2)) expect(2, "bias", {s.n});
    if (present(3)) expect(3, "residual", {s.m, s.n});
    step_.epi = get_epilogue("act_alpha", "act_beta");
    step_.shape = s;
  }

  void matmul() {
    rank_at_least(0, "a", 2);
    rank_at_least(1, "b", 2);
    const auto& a = x(0);
    const auto& b = x(1);
    const int ra = static_cast<int>(a.size()), rb = static_cast<int>(b.size());
    MatMulShape s;
    s.g.m = a[ra - 2], s.g.k = a[ra - 1], s.g.n = b[rb - 1];
    if (b[rb - 2] != s.g.k)
      fail("inner dimensions differ: a ", shape_str(a), " @ b ", shape_str(b));
    const int nd = std::max(ra, rb) - 2;
    std::vector<int64_t> ys(nd + 2);
    const auto sa = dense_strides(a), sb = dense_strides(b);
    for (int i = 0; i < nd; ++i) {
      const int ia = i - (nd - (ra - 2)), ib = i - (nd - (rb - 2));
      const int64_t ea = ia >= 0 ? a[ia] : 1, eb = ib >= 0 ? b[ib] : 1;
      if (ea != eb && ea != 1 && eb != 1)
        fail("batch dimensions of a ", shape_str(a), " and b ", shape_str(b), " cannot be broadcast");
      ys[i] = std::max(ea, eb);
      s.batch[i] = ys[i];
      s.a_stride[i] = ea == 1 ? 0 : sa[ia];
      s.b_stride[i] = eb == 1 ? 0 : sb[ib];
      s.count *= ys[i];
    }
    ys[nd] = s.g.m, ys[nd + 1] = s.g.n;
    expect_out(ys);
    s.nd = nd;
    // [..., m, k] @ [k, n] (b shared by every batch, a dense over them) is one gemm of m * batch rows.
    bool b_shared = true, a_full = true;
    for (int i = 0; i < nd; ++i) {
      b_shared = b_shared && (s.b_stride[i] == 0);
      a_full = a_full && (s.a_stride[i] != 0 || s.batch[i] == 1);
    }
    if (b_shared && a_full) {
      s.g.m *= s.count;
      s.count = 1;
      s.nd = 0;
    }
    step_.shape = s;
  }

  void pixel_shuffle() {
    rank(0, "x", 4);
    PixelShuffleShape s;
    s.block = get_int("block", 1, 4097);
    s.mode = static_cast<ShuffleMode>(get_choice("mode", {"CRD", "DCR"}));
    if (x(0)[1] % (s.block * s.block) != 0)
      fail("channels (", x(0)[1], ") must be divisible by block^2 = ", s.block * s.block);
    s.n = x(0)[0], s.c = x(0)[1] / (s.block * s.block), s.h = x(0)[2], s.w = x(0)[3];
    // Optional crop = [top, left]: the output is the window of the shuffled map at that corner, of the output's
    // size (the sub-pixel form of a padded transposed conv; CPU only).
    if (find("crop")) {
      if (spec_.device != "cpu") fail("crop runs on the CPU only");
      const auto at = get_ints("crop", 2, 0, kMaxDim);
      if (y().size() != 4 || y()[0] != s.n || y()[1] != s.c || y()[2] < 1 || y()[3] < 1 ||
          at[0] + y()[2] > s.h * s.block || at[1] + y()[3] > s.w * s.block)
        fail("output ", vname(s_.outputs[0]), " must be a window [", s.n, ", ", s.c, ", h, w] of the shuffled map ",
             shape_str({s.n, s.c, s.h * s.block, s.w * s.block}), " at crop ", shape_str(at), ", got ",
             shape_str(y()));
      s.top = at[0], s.left = at[1], s.crop_h = y()[2], s.crop_w = y()[3];
    }
    expect_out({s.n, s.c, s.out_h(), s.out_w()});
    step_.shape = s;
  }

  void resize() {
    rank(0, "x", 4);
    ResizeShape s;
    s.mode = static_cast<ResizeMode>(get_choice("mode", {"nearest", "bilinear"}));
    s.coord = static_cast<CoordMode>(
        get_choice("coord", {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"}));
    // The rounding of nearest mode; bilinear does not read it.
    s.nearest = static_cast<NearestMode>(
        get_choice("nearest", {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"},
                   s.mode == ResizeMode::Bilinear ? std::optional<int>(0) : std::nullopt));
    s.scale_h = get_scale("scale_h");
    s.scale_w = get_scale("scale_w");
    s.n = x(0)[0], s.c = x(0)[1], s.h = x(0)[2], s.w = x(0)[3];
    if (y().size() != 4 || y()[0] != s.n || y()[1] != s.c)
      fail("output ", vname(s_.outputs[0]), " must have shape [", s.n, ", ", s.c, ", out_h, out_w], got ",
           shape_str(y()));
    s.out_h = y()[2], s.out_w = y()[3];
    step_.shape = s;
  }

  void softmax() {
    SoftmaxShape s;
    s.outer = get_int("outer", 1, kMaxNumel + 1);
    s.dim = get_int("dim", 1, kMaxNumel + 1);
    s.inner = get_int("inner", 1, kMaxNumel + 1);
    s.log = get_bool("log");
    view3(s.outer, s.dim, s.inner);
    expect_out(x(0));
    step_.shape = s;
  }

  // outer * dim * inner must be exactly the input's element count (checked without overflow).
  void view3(int64_t outer, int64_t dim, int64_t inner) const {
    const int64_t n = numel_in(0);
    if (outer > n || dim > n / outer || inner > n / (outer * dim) || outer * dim * inner != n)
      fail("the view [outer, dim, inner] = [", outer, ", ", dim, ", ", inner, "] does not cover the ",
           n, " elements of x ", shape_str(x(0)));
  }

  void binary() {
    static const std::initializer_list<const char*> kBinOps = {"add", "sub", "mul", "div"};
    const BinaryOp bop = static_cast<BinaryOp>(get_choice("op", kBinOps));
    const auto& a = x(0);
    const auto& b = x(1);
    const int nd = static_cast<int>(std::max(a.size(), b.size()));
    std::vector<int64_t> shape(nd), sa(nd), sb(nd);
    const auto da = dense_strides(a), db = dense_strides(b);
    for (int i = 0; i < nd; ++i) {
      const int ia = i - (nd - static_cast<int>(a.size())), ib = i - (nd - static_cast<int>(b.size()));
      const int64_t ea = ia >= 0 ? a[ia] : 1, eb = ib >= 0 ? b[ib] : 1;
      if (ea != eb && ea != 1 && eb != 1)
        fail("shapes ", shape_str(a), " and ", shape_str(b), " cannot be broadcast together");
      shape[i] = std::max(ea, eb);
      sa[i] = ea == 1 ? 0 : da[ia];
      sb[i] = eb == 1 ? 0 : db[ib];
    }
    expect_out(shape);
    // Size-1 dims dropped and neighbours contiguous in both operands merged, as bindings.cpp does,
    // so the CUDA kernel takes its contiguous path whenever it can.
    BinaryShape s;
    s.op = bop;
    s.ndim = 0;
    for (int i = 0; i < nd; ++i) {
      if (shape[i] == 1) continue;
      const int k = s.ndim - 1;
      if (k >= 0 && s.a_strides[k] == sa[i] * shape[i] && s.b_strides[k] == sb[i] * shape[i]) {
        s.shape[k] *= shape[i];
        s.a_strides[k] = sa[i];
        s.b_strides[k] = sb[i];
      } else {
        s.shape[s.ndim] = shape[i];
        s.a_strides[s.ndim] = sa[i];
        s.b_strides[s.ndim] = sb[i];
        ++s.ndim;
      }
    }
    if (s.ndim == 0) s.ndim = 1, s.shape[0] = 1, s.a_strides[0] = s.b_strides[0] = 0;
    step_.epi = get_epilogue();
    step_.shape = s;
  }

  void activation() {
    expect_out(x(0));
    step_.epi = get_epilogue();
    step_.numel = numel_in(0);
  }

  void batch_norm() {
    rank_at_least(0, "x", 2);
    BatchNormShape s;
    s.n = x(0)[0], s.c = x(0)[1];
    for (size_t i = 2; i < x(0).size(); ++i) s.hw *= x(0)[i];
    s.eps = get_finite("eps", 0.0);
    static const char* names[] = {"", "gamma", "beta", "mean", "var"};
    for (int i = 1; i < 5; ++i) expect(i, names[i], {s.c});
    expect_out(x(0));
    step_.epi = get_epilogue();
    step_.shape = s;
  }

  void concat() {
    const int nd = static_cast<int>(y().size());
    const int64_t axis = get_int("axis", 0, std::max(nd, 1));
    if (nd == 0) fail("output must have at least one dimension");
    ConcatData c;
    int64_t sum = 0;
    for (size_t i = 0; i < s_.inputs.size(); ++i) {
      const auto& xi = x(static_cast<int>(i));
      bool same = static_cast<int>(xi.size()) == nd;
      for (int d = 0; same && d < nd; ++d) same = d == axis || xi[d] == y()[d];
      if (!same)
        fail("input ", i, " ", vname(s_.inputs[i]), " has shape ", shape_str(xi), " but the output is ",
             shape_str(y()), "; they may differ only along axis ", axis);
      c.sizes.push_back(xi[axis]);
      sum += xi[axis];
    }
    if (sum != y()[axis])
      fail("the inputs' extents along axis ", axis, " add up to ", sum, " but the output's is ",
           y()[axis]);
    for (int d = 0; d < axis; ++d) c.outer *= y()[d];
    for (int d = static_cast<int>(axis) + 1; d < nd; ++d) c.inner *= y()[d];
    c.ptrs.resize(c.sizes.size());
    step_.shape = std::move(c);
  }

  void strided_copy() {
    const auto& ys = y();
    const size_t nd = ys.size();
    const auto strides = get_ints("x_strides", nd, -kMaxNumel, kMaxNumel + 1);
    const int64_t off = get_int("x_offset", 0, kMaxNumel + 1);
    StridedCopyShape s;
    s.ndim = nd == 0 ? 1 : static_cast<int>(nd);
    s.shape[0] = 1, s.x_strides[0] = 0;
    s.x_offset = off;
    // Every index read is inside x: the lowest and highest offsets reached, each term <= numel(x)
    // (checked before multiplying, so nothing overflows).
    const int64_t n = numel_in(0);
    int64_t lo = off, hi = off;
    for (size_t d = 0; d < nd; ++d) {
      s.shape[d] = ys[d], s.x_strides[d] = strides[d];
      const int64_t mag = std::abs(strides[d]);
      if (ys[d] > 1 && mag > 0 && ys[d] - 1 > n / mag)
        fail("x_strides ", shape_str(strides), " reach outside x ", shape_str(x(0)), " for output ",
             shape_str(ys));
      const int64_t span = (ys[d] - 1) * mag;
      (strides[d] < 0 ? lo : hi) += strides[d] < 0 ? -span : span;
    }
    if (lo < 0 || hi >= n)
      fail("x_offset ", off, " and x_strides ", shape_str(strides), " read elements [", lo, ", ", hi,
           "] of x ", shape_str(x(0)), ", which has ", n);
    step_.shape = s;
  }

  void pad() {
    const auto& xs = x(0);
    const size_t nd = xs.size();
    const auto b = get_ints("pad_begin", nd, 0, kMaxDim);
    const auto e = get_ints("pad_end", nd, 0, kMaxDim);
    PadShape s;
    s.mode = static_cast<PadMode>(get_choice("mode", {"constant", "reflect", "edge"}));
    s.value = static_cast<float>(get_float("value", s.mode == PadMode::Constant ? std::optional<double>()
                                                                                 : 0.0));
    s.ndim = nd == 0 ? 1 : static_cast<int>(nd);
    s.shape[0] = 1, s.pad_begin[0] = s.pad_end[0] = 0;
    std::vector<int64_t> ys(nd);
    for (size_t d = 0; d < nd; ++d) {
      s.shape[d] = xs[d], s.pad_begin[d] = b[d], s.pad_end[d] = e[d];
      if (s.mode == PadMode::Reflect && (b[d] >= xs[d] || e[d] >= xs[d]))
        fail("reflect pads must be smaller than the dimension they pad: x ", shape_str(xs),
             ", pad_begin ", shape_str(b), ", pad_end ", shape_str(e));
      ys[d] = s.out_dim(static_cast<int>(d));
    }
    expect_out(ys);
    step_.shape = s;
  }

  void lrn() {
    rank_at_least(0, "x", 2);
    LrnShape s;
    s.n = x(0)[0], s.c = x(0)[1];
    for (size_t i = 2; i < x(0).size(); ++i) s.hw *= x(0)[i];
    s.size = get_int("size", 1, kMaxDim);
    s.alpha = get_finite("alpha", -std::numeric_limits<float>::max());
    s.beta = get_finite("beta", -std::numeric_limits<float>::max());
    s.bias = get_finite("bias", -std::numeric_limits<float>::max());
    expect_out(x(0));
    step_.shape = s;
  }

  void reduce() {
    ReduceShape s;
    s.op = static_cast<ReduceOp>(get_choice("op", {"mean", "sum", "max", "min"}));
    s.outer = get_int("outer", 1, kMaxNumel + 1);
    s.dim = get_int("dim", 1, kMaxNumel + 1);
    s.inner = get_int("inner", 1, kMaxNumel + 1);
    view3(s.outer, s.dim, s.inner);
    if (numel_out() != s.outer * s.inner)
      fail("output ", vname(s_.outputs[0]), " ", shape_str(y()), " must have outer * inner = ",
           s.outer * s.inner, " elements");
    step_.shape = s;
  }

  void copy() {
    if (numel_in(0) != numel_out())
      fail("x ", shape_str(x(0)), " and the output ", shape_str(y()), " differ in element count");
    step_.numel = vals_[s_.outputs[0]].bytes;
  }

  // --- data flow ------------------------------------------------------------------------------
  bool may_run_in_place(int input) const {
    switch (step_.op) {
      case Op::Activation: return input == 0;
      case Op::BatchNorm: return input == 0;
      case Op::Binary: return numel_in(input) == numel_out();
      default: return false;
    }
  }

  void check_data_flow() {
    const int64_t yid = s_.outputs[0];
    const Val& yv = vals_[yid];
    const ValueKind yk = spec_.values[yid].kind;
    if (yk != ValueKind::Arena && yk != ValueKind::Output)
      fail("writes value ", vname(yid), " of kind '",
           yk == ValueKind::Input ? "input" : yk == ValueKind::Constant ? "constant" : "alias",
           "'; steps write arena and output values only");
    if (vals_[yid].writer >= 0)
      fail("writes value ", vname(yid), ", which step ", vals_[yid].writer, " already writes");
    for (size_t i = 0; i < s_.inputs.size(); ++i) {
      const int64_t id = s_.inputs[i];
      if (id < 0) continue;
      const Val& v = vals_[id];
      const ValueKind rk = spec_.values[v.root].kind;
      int def = -1;
      if (rk == ValueKind::Arena || rk == ValueKind::Output) {
        def = vals_[v.root].writer;
        if (def < 0) fail("reads value ", vname(id), " before any step writes it");
        // Later writes into these bytes (only arena and output regions are ever written).
        for (int t = def + 1; t < index_; ++t) {
          const Write& w = writes_[t];
          if (w.region == v.region && w.begin < v.offset + v.bytes && v.offset < w.end)
            fail("reads value ", vname(id), " (written by step ", def, "), but step ", t,
                 " overwrites its bytes before that");
        }
      }
      if (v.region == yv.region && v.offset < yv.offset + yv.bytes && yv.offset < v.offset + v.bytes) {
        const bool exact = v.offset == yv.offset && v.bytes == yv.bytes;
        if (!exact || !may_run_in_place(static_cast<int>(i)))
          fail("output ", vname(yid), " overlaps input ", i, " ", vname(id),
               "; only activation, binary (an operand of the output's shape) and batch_norm (x) may "
               "run in place, on exactly the same bytes");
      }
    }
    vals_[yid].writer = index_;
  }

  const StepSpec& s_;
  int index_;
  const PlanSpec& spec_;
  std::vector<Val>& vals_;
  const std::vector<Write>& writes_;
  std::vector<bool> used_;
  std::vector<const char*> known_;
  Step step_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------

Plan::Impl::Impl(const PlanSpec& spec) {
  std::vector<Val> vals;
  build(spec, vals);
}

void Plan::Impl::build(const PlanSpec& spec, std::vector<Val>& vals) {
  if (spec.device == "cpu") {
    cuda = false;
  } else if (spec.device == "cuda" || spec.device.rfind("cuda:", 0) == 0) {
    const std::string idx = spec.device == "cuda" ? "0" : spec.device.substr(5);
    EV_CHECK(!idx.empty() && idx.size() <= 4 && idx.find_first_not_of("0123456789") == std::string::npos,
             "plan: device '", spec.device, "' is not 'cpu' or 'cuda:N'");
    cuda = true;
    device_id = std::stoi(idx);
#ifndef EV_WITH_CUDA
    EV_CHECK(false, "plan: device '", spec.device, "' but this edgevision was built without CUDA "
             "(rebuild with nvcc on PATH, EDGEVISION_CUDA=ON)");
#endif
  } else {
    EV_CHECK(false, "plan: device '", spec.device, "' is not 'cpu' or 'cuda:N'");
  }
  if (spec.dtype == "float32") {
    dt = DType::F32, esize = 4;
  } else if (spec.dtype == "float16") {
    EV_CHECK(cuda, "plan: dtype float16 runs on CUDA only; the CPU kernels run float32");
    dt = DType::F16, esize = 2;
  } else {
    EV_CHECK(false, "plan: dtype '", spec.dtype, "' is not 'float32' or 'float16'");
  }
  EV_CHECK(spec.num_threads >= 0 && spec.num_threads <= 4096, "plan: num_threads must be in [0, 4096], got ",
           spec.num_threads);
  threads = spec.num_threads > 0 ? static_cast<int>(spec.num_threads) : omp_get_max_threads();
  EV_CHECK(spec.arena_bytes >= 0 && spec.arena_bytes <= kMaxNumel, "plan: arena_bytes must be in [0, 2^40], got ",
           spec.arena_bytes);
  arena_bytes = spec.arena_bytes;
  EV_CHECK(spec.values.size() < static_cast<size_t>(std::numeric_limits<int>::max() / 2) &&
               spec.steps.size() < static_cast<size_t>(std::numeric_limits<int>::max() / 2) &&
               spec.inputs.size() + spec.outputs.size() < 1u << 20,
           "plan: too many values, steps, inputs or outputs");

  // Constants, one pool, each at an aligned offset.
  std::vector<int64_t> const_offsets;
  for (size_t k = 0; k < spec.constants.size(); ++k) {
    const ConstantSpec& c = spec.constants[k];
    EV_CHECK(c.shape.size() <= static_cast<size_t>(kMaxDims), "plan: constant ", k, " has ",
             c.shape.size(), " dimensions; at most ", kMaxDims, " are supported");
    int64_t numel = 1;
    for (int64_t d : c.shape) {
      EV_CHECK(d >= 1 && d < kMaxDim && numel <= kMaxNumel / d, "plan: constant ", k, " has shape ",
               shape_str(c.shape), "; dims must be in [1, 2^31)");
      numel *= d;
    }
    EV_CHECK(c.data, "plan: constant ", k, " has no data");
    const_offsets.push_back(constant_bytes);
    constant_bytes += round_up(numel * esize, kPoolAlign);
    EV_CHECK(constant_bytes <= kMaxNumel, "plan: the constants take more than 2^40 bytes");
  }

  // Inputs and outputs.
  auto io_list = [&](const std::vector<int64_t>& ids, const char* key, ValueKind kind,
                     std::vector<PlanTensor>& out) {
    for (size_t i = 0; i < ids.size(); ++i) {
      EV_CHECK(ids[i] >= 0 && ids[i] < static_cast<int64_t>(spec.values.size()), "plan: spec['", key,
               "'][", i, "] = ", ids[i], " is not a value id");
      const ValueSpec& v = spec.values[ids[i]];
      EV_CHECK(v.kind == kind && v.index && *v.index == static_cast<int64_t>(i), "plan: spec['", key,
               "'][", i, "] is value ", ids[i], " ('", v.name, "'), which is not of kind '",
               kind == ValueKind::Input ? "input" : "output", "' with index ", i);
      out.push_back(PlanTensor{v.name, v.shape, 0});
    }
  };
  io_list(spec.inputs, "inputs", ValueKind::Input, inputs);
  io_list(spec.outputs, "outputs", ValueKind::Output, outputs);

  vals.assign(spec.values.size(), Val{});
  ValueResolver resolver(spec, vals, esize, cuda, const_offsets);
  for (size_t id = 0; id < spec.values.size(); ++id) resolver.resolve(static_cast<int>(id));
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i].bytes = vals[spec.inputs[i]].bytes;
  for (size_t i = 0; i < outputs.size(); ++i) outputs[i].bytes = vals[spec.outputs[i]].bytes;

  std::vector<Write> writes;
  steps.reserve(spec.steps.size());
  for (size_t t = 0; t < spec.steps.size(); ++t) {
    steps.push_back(StepBuilder(spec.steps[t], static_cast<int>(t), spec, vals, writes).build());
    const Val& y = vals[spec.steps[t].outputs[0]];
    writes.push_back({y.region, y.offset, y.offset + y.bytes});
  }
  for (size_t i = 0; i < spec.outputs.size(); ++i)
    EV_CHECK(vals[spec.outputs[i]].writer >= 0, "plan: output ", i, " ('", outputs[i].name,
             "') is written by no step");

  allocate(spec, const_offsets);
}

namespace {

template <typename T = float>
T* at(char* const* bases, const Ref& r) {
  return r.region < 0 ? nullptr : reinterpret_cast<T*>(bases[r.region] + r.offset);
}

// The inputs that a CPU step reads in its kernel's own layout: conv weights, gemm B, conv2d_dw_pw's 1x1 convs'
// weights and on its blocked path the depthwise's (packed together).
std::vector<int> packed_inputs(const Step& s) {
  if (s.op != Op::Conv2dDwPw) return {1};
  const DwPwShape& d = std::get<DwPwShape>(s.shape);
  std::vector<int> in{3};
  if (d.expand) in.push_back(6);
  if (conv2d_dw_pw_cpu_packs_depthwise(d)) in.push_back(1);
  return in;
}

// Floats of those inputs in the kernel's layout; 0: the kernel reads them as given.
int64_t packed_floats(const Step& s) {
  if (s.op == Op::Conv2d) return conv2d_cpu_packed_floats(std::get<Conv2dShape>(s.shape));
  if (s.op == Op::Conv2dDwPw) return conv2d_dw_pw_cpu_packed_floats(std::get<DwPwShape>(s.shape));
  if (s.op == Op::Gemm) return gemm_cpu_packed_b_floats(std::get<GemmShape>(s.shape));
  if (s.op == Op::ConvTranspose2d) return conv_transpose2d_cpu_packed_floats(std::get<ConvTranspose2dShape>(s.shape));
  return 0;
}

// A CPU conv or gemm whose weights are constants gets them packed once, at build (weights computed at run
// time are packed by every call, conv weights into the workspace).
bool prepacks(const Step& s) {
  if (packed_floats(s) == 0) return false;
  for (int i : packed_inputs(s))
    if (s.in.size() <= static_cast<size_t>(i) || s.in[i].region != kConstants) return false;
  return true;
}

// src(i): the data of input i.
template <class Src>
void pack(const Step& s, Src src, float* dst) {
  if (s.op == Op::Conv2d) conv2d_cpu_pack(std::get<Conv2dShape>(s.shape), src(1), dst);
  else if (s.op == Op::Conv2dDwPw) {
    const DwPwShape& d = std::get<DwPwShape>(s.shape);
    conv2d_dw_pw_cpu_pack(d, src(3), d.expand ? src(6) : nullptr, src(1), dst);
  } else if (s.op == Op::ConvTranspose2d) {
    conv_transpose2d_cpu_pack(std::get<ConvTranspose2dShape>(s.shape), src(1), dst);
  } else gemm_cpu_pack_b(std::get<GemmShape>(s.shape), src(1), dst);
}

}  // namespace

void Plan::Impl::allocate(const PlanSpec& spec, const std::vector<int64_t>& const_offsets) {
  // The largest workspace any step asks for, under the thread count run() will use.
  size_t ws = 0;
  {
    OmpThreads guard(threads);
    for (const Step& s : steps) {
      if (cuda) {
#ifdef EV_WITH_CUDA
        if (auto* c = std::get_if<Conv2dShape>(&s.shape)) ws = std::max(ws, conv2d_cuda_workspace(*c, dt));
#endif
      } else if (auto* c = std::get_if<Conv2dShape>(&s.shape)) {
        const bool residual = s.in.size() > 3 && s.in[3].region >= 0;
        ws = std::max(ws, s.pool.n ? conv2d_max_pool_cpu_workspace(*c, s.pool, residual, prepacks(s))
                                   : conv2d_cpu_workspace(*c, prepacks(s)));
      } else if (auto* d = std::get_if<DwPwShape>(&s.shape)) {
        ws = std::max(ws, conv2d_dw_pw_cpu_workspace(*d, prepacks(s)));
      } else if (auto* t = std::get_if<ConvTranspose2dShape>(&s.shape)) {
        ws = std::max(ws, conv_transpose2d_cpu_workspace(*t, prepacks(s)));
      } else if (auto* g = std::get_if<GemmShape>(&s.shape)) {
        ws = std::max(ws, gemm_cpu_workspace(*g));
      } else if (auto* m = std::get_if<MatMulShape>(&s.shape)) {
        ws = std::max(ws, gemm_cpu_workspace(m->g));
      }
    }
  }
  workspace_bytes = static_cast<int64_t>(ws);
  times.assign(steps.size(), 0.0);
  bases.assign(kFirstIO + inputs.size() + outputs.size(), nullptr);

  if (!cuda) {
    host_arena = host_alloc(arena_bytes);
    host_workspace = host_alloc(workspace_bytes);
    host_constants = host_alloc(constant_bytes);
    bases[kArena] = static_cast<char*>(host_arena.get());
    bases[kConstants] = static_cast<char*>(host_constants.get());
    // The constant that holds byte `offset` of the constants region, and a pointer to that byte in the spec.
    auto owner = [&](int64_t offset) {
      return static_cast<size_t>(std::upper_bound(const_offsets.begin(), const_offsets.end(), offset) -
                                 const_offsets.begin() - 1);
    };
    auto source = [&](const Ref& r) {
      const size_t k = owner(r.offset);
      return spec.constants[k].data + (r.offset - const_offsets[k]) / static_cast<int64_t>(sizeof(float));
    };
    // Conv and gemm weights go into the kernels' layout, packed from the spec. A constant read by nothing else is
    // not copied at all: its pages of the constants buffer are never touched, so the weights take memory once.
    std::vector<char> needed(spec.constants.size(), 0);
    int64_t floats = 0;
    for (Step& s : steps) {
      const bool packs = prepacks(s);
      const std::vector<int> packed_in = packs ? packed_inputs(s) : std::vector<int>{};
      for (size_t i = 0; i < s.in.size(); ++i)
        if (s.in[i].region == kConstants &&
            std::find(packed_in.begin(), packed_in.end(), static_cast<int>(i)) == packed_in.end())
          needed[owner(s.in[i].offset)] = 1;
      if (packs) {
        s.packed = floats;
        floats += round_up(packed_floats(s), 16);
      }
    }
    for (size_t k = 0; k < spec.constants.size(); ++k) {
      if (!needed[k]) continue;
      const ConstantSpec& c = spec.constants[k];
      int64_t numel = 1;
      for (int64_t d : c.shape) numel *= d;
      std::memcpy(static_cast<char*>(host_constants.get()) + const_offsets[k], c.data,
                  static_cast<size_t>(numel) * sizeof(float));
    }
    packed_bytes = floats * static_cast<int64_t>(sizeof(float));
    host_packed = host_alloc(packed_bytes);
    OmpThreads guard(threads);  // a layout may depend on the thread count (conv2d_cpu_pack's split-K 1x1 convs)
    for (Step& s : steps)
      if (s.packed >= 0)
        pack(s, [&](int i) { return source(s.in[i]); }, static_cast<float*>(host_packed.get()) + s.packed);
    return;
  }
#ifdef EV_WITH_CUDA
  const int prev = cuda_current_device();
  cuda_set_device(device_id);
  try {
    dev_arena = plan_cuda::alloc(arena_bytes, "the arena");
    dev_workspace = plan_cuda::alloc(workspace_bytes, "the workspace");
    dev_constants = plan_cuda::alloc(constant_bytes, "the constants");
    for (size_t k = 0; k < spec.constants.size(); ++k) {
      const ConstantSpec& c = spec.constants[k];
      int64_t numel = 1;
      for (int64_t d : c.shape) numel *= d;
      plan_cuda::upload(static_cast<char*>(dev_constants) + const_offsets[k], c.data, numel, dt);
    }
    int64_t io_bytes = 0;
    std::vector<int64_t> io_offsets;
    for (const auto* list : {&inputs, &outputs})
      for (const PlanTensor& t : *list) {
        io_offsets.push_back(io_bytes);
        io_bytes += round_up(t.bytes, kPoolAlign);
      }
    dev_io = plan_cuda::alloc(io_bytes, "the input and output staging buffers");
    for (size_t i = 0; i < io_offsets.size(); ++i)
      bases[kFirstIO + i] = static_cast<char*>(dev_io) + io_offsets[i];
    bases[kArena] = static_cast<char*>(dev_arena);
    bases[kConstants] = static_cast<char*>(dev_constants);
    stream = plan_cuda::stream_create();
    legacy_done = plan_cuda::event_create(false);
    run_done = plan_cuda::event_create(false);
  } catch (...) {
    release_cuda();
    cuda_set_device(prev);
    throw;
  }
  cuda_set_device(prev);
#endif
}

Plan::Impl::~Impl() {
#ifdef EV_WITH_CUDA
  if (cuda) {
    try {
      const int prev = cuda_current_device();
      cuda_set_device(device_id);
      release_cuda();
      cuda_set_device(prev);
    } catch (...) {
      release_cuda();
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// CPU

namespace {

// Calls fn(a_offset, b_offset, batch_index) for every batch of a matmul (offsets in elements).
template <typename Fn>
void for_each_batch(const MatMulShape& m, Fn&& fn) {
  int64_t idx[kMaxDims] = {};
  int64_t ao = 0, bo = 0;
  for (int64_t i = 0; i < m.count; ++i) {
    fn(ao, bo, i);
    for (int d = m.nd - 1; d >= 0; --d) {  // odometer over the batch dims
      ao += m.a_stride[d];
      bo += m.b_stride[d];
      if (++idx[d] < m.batch[d]) break;
      ao -= idx[d] * m.a_stride[d];
      bo -= idx[d] * m.b_stride[d];
      idx[d] = 0;
    }
  }
}
}  // namespace

void Plan::Impl::exec_cpu(Step& s, void* ws) {
  char* const* b = bases.data();
  auto in = [&](int i) { return i < static_cast<int>(s.in.size()) ? at<const float>(b, s.in[i]) : nullptr; };
  // The weights packed at build (packed_inputs), or nullptr: the kernel packs them per call.
  auto packed = [&] { return s.packed >= 0 ? static_cast<const float*>(host_packed.get()) + s.packed : nullptr; };
  float* y = at(b, s.out);
  switch (s.op) {
    case Op::Conv2d:
      if (s.pool.n)
        conv2d_max_pool_cpu(std::get<Conv2dShape>(s.shape), s.pool, in(0), in(1), in(2), in(3), y,
                            s.epi, ws, packed());
      else
        conv2d_cpu(std::get<Conv2dShape>(s.shape), in(0), in(1), in(2), in(3), y, s.epi, ws, packed());
      break;
    case Op::ConvTranspose2d:
      conv_transpose2d_cpu(std::get<ConvTranspose2dShape>(s.shape), in(0), in(1), in(2), y, s.epi, ws, packed());
      break;
    case Op::MaxPool2d: max_pool2d_cpu(std::get<Pool2dShape>(s.shape), in(0), y); break;
    case Op::AvgPool2d: avg_pool2d_cpu(std::get<Pool2dShape>(s.shape), in(0), y); break;
    case Op::GlobalAvgPool: global_avg_pool_cpu(std::get<GlobalPoolShape>(s.shape), in(0), y); break;
    case Op::GlobalMaxPool: global_max_pool_cpu(std::get<GlobalPoolShape>(s.shape), in(0), y); break;
    case Op::Gemm:
      gemm_cpu(std::get<GemmShape>(s.shape), in(0), in(1), in(2), in(3), y, s.epi, ws, packed());
      break;
    case Op::MatMul: {
      const MatMulShape& m = std::get<MatMulShape>(s.shape);
      const float *a = in(0), *bb = in(1);
      const int64_t ys = m.g.m * m.g.n;
      for_each_batch(m, [&](int64_t ao, int64_t bo, int64_t i) {
        gemm_cpu(m.g, a + ao, bb + bo, nullptr, nullptr, y + i * ys, Epilogue{}, ws);
      });
      break;
    }
    case Op::PixelShuffle: pixel_shuffle_cpu(std::get<PixelShuffleShape>(s.shape), in(0), y); break;
    case Op::Resize: resize_cpu(std::get<ResizeShape>(s.shape), in(0), y); break;
    case Op::Softmax: softmax_cpu(std::get<SoftmaxShape>(s.shape), in(0), y); break;
    case Op::Binary: binary_cpu(std::get<BinaryShape>(s.shape), in(0), in(1), y, s.epi); break;
    case Op::Activation: activation_cpu(s.numel, in(0), y, s.epi); break;
    case Op::BatchNorm:
      batch_norm_cpu(std::get<BatchNormShape>(s.shape), in(0), in(1), in(2), in(3), in(4), y, s.epi);
      break;
    case Op::Concat: {
      ConcatData& c = std::get<ConcatData>(s.shape);
      for (size_t i = 0; i < c.ptrs.size(); ++i) c.ptrs[i] = in(static_cast<int>(i));
      ConcatShape cs{c.outer, c.inner, static_cast<int>(c.sizes.size()), c.sizes.data()};
      concat_cpu(cs, reinterpret_cast<const float* const*>(c.ptrs.data()), y);
      break;
    }
    case Op::StridedCopy: strided_copy_cpu(std::get<StridedCopyShape>(s.shape), in(0), y); break;
    case Op::Pad: pad_cpu(std::get<PadShape>(s.shape), in(0), y); break;
    case Op::Lrn: lrn_cpu(std::get<LrnShape>(s.shape), in(0), y); break;
    case Op::Reduce: reduce_cpu(std::get<ReduceShape>(s.shape), in(0), y); break;
    case Op::Copy: std::memcpy(y, in(0), static_cast<size_t>(s.numel)); break;
    case Op::Conv2dDwPw: {
      const DwPwShape& d = std::get<DwPwShape>(s.shape);
      conv2d_dw_pw_cpu(d, in(0), in(6), in(7), in(1), in(2), in(3), in(4), in(5), y, s.epi, ws, packed());
      break;
    }
  }
}

void Plan::Impl::run_cpu(const void* const* in, void* const* out) {
  const size_t nin = inputs.size();
  for (size_t i = 0; i < nin; ++i) bases[kFirstIO + i] = static_cast<char*>(const_cast<void*>(in[i]));
  for (size_t j = 0; j < outputs.size(); ++j) bases[kFirstIO + nin + j] = static_cast<char*>(out[j]);
  void* ws = host_workspace.get();
  OmpThreads guard(threads);
  if (!profiling) {
    for (Step& s : steps) exec_cpu(s, ws);
    return;
  }
  using clock = std::chrono::steady_clock;
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto t0 = clock::now();
    exec_cpu(steps[i], ws);
    times[i] = std::chrono::duration<double>(clock::now() - t0).count();
  }
  profiled = true;
}

// ---------------------------------------------------------------------------------------------
// CUDA

#ifdef EV_WITH_CUDA
void Plan::Impl::exec_cuda(Step& s, Stream st) {
  char* const* b = bases.data();
  auto in = [&](int i) -> const void* {
    return i < static_cast<int>(s.in.size()) ? at<const char>(b, s.in[i]) : nullptr;
  };
  void* y = at<char>(b, s.out);
  switch (s.op) {
    case Op::Conv2d:
      conv2d_cuda(std::get<Conv2dShape>(s.shape), dt, in(0), in(1), in(2), in(3), y, s.epi,
                  dev_workspace, st);
      break;
    case Op::ConvTranspose2d:
      conv_transpose2d_cuda(std::get<ConvTranspose2dShape>(s.shape), dt, in(0), in(1), in(2), y, s.epi, st);
      break;
    case Op::MaxPool2d: max_pool2d_cuda(std::get<Pool2dShape>(s.shape), dt, in(0), y, st); break;
    case Op::AvgPool2d: avg_pool2d_cuda(std::get<Pool2dShape>(s.shape), dt, in(0), y, st); break;
    case Op::GlobalAvgPool: global_avg_pool_cuda(std::get<GlobalPoolShape>(s.shape), dt, in(0), y, st); break;
    case Op::GlobalMaxPool: global_max_pool_cuda(std::get<GlobalPoolShape>(s.shape), dt, in(0), y, st); break;
    case Op::Gemm:
      gemm_cuda(std::get<GemmShape>(s.shape), dt, in(0), in(1), in(2), in(3), y, s.epi, st);
      break;
    case Op::MatMul: {
      const MatMulShape& m = std::get<MatMulShape>(s.shape);
      const char *a = static_cast<const char*>(in(0)), *bb = static_cast<const char*>(in(1));
      const int64_t ys = m.g.m * m.g.n;
      for_each_batch(m, [&](int64_t ao, int64_t bo, int64_t i) {
        gemm_cuda(m.g, dt, a + ao * esize, bb + bo * esize, nullptr, nullptr,
                  static_cast<char*>(y) + i * ys * esize, Epilogue{}, st);
      });
      break;
    }
    case Op::PixelShuffle: pixel_shuffle_cuda(std::get<PixelShuffleShape>(s.shape), dt, in(0), y, st); break;
    case Op::Resize: resize_cuda(std::get<ResizeShape>(s.shape), dt, in(0), y, st); break;
    case Op::Softmax: softmax_cuda(std::get<SoftmaxShape>(s.shape), dt, in(0), y, st); break;
    case Op::Binary: binary_cuda(std::get<BinaryShape>(s.shape), dt, in(0), in(1), y, s.epi, st); break;
    case Op::Activation: activation_cuda(s.numel, dt, in(0), y, s.epi, st); break;
    case Op::BatchNorm:
      batch_norm_cuda(std::get<BatchNormShape>(s.shape), dt, in(0), in(1), in(2), in(3), in(4), y,
                      s.epi, st);
      break;
    case Op::Concat: {
      ConcatData& c = std::get<ConcatData>(s.shape);
      for (size_t i = 0; i < c.ptrs.size(); ++i) c.ptrs[i] = in(static_cast<int>(i));
      ConcatShape cs{c.outer, c.inner, static_cast<int>(c.sizes.size()), c.sizes.data()};
      concat_cuda(cs, dt, c.ptrs.data(), y, st);
      break;
    }
    case Op::StridedCopy: strided_copy_cuda(std::get<StridedCopyShape>(s.shape), dt, in(0), y, st); break;
    case Op::Pad: pad_cuda(std::get<PadShape>(s.shape), dt, in(0), y, st); break;
    case Op::Lrn: lrn_cuda(std::get<LrnShape>(s.shape), dt, in(0), y, st); break;
    case Op::Reduce: reduce_cuda(std::get<ReduceShape>(s.shape), dt, in(0), y, st); break;
    case Op::Copy: plan_cuda::copy_async(y, in(0), static_cast<size_t>(s.numel), st); break;
    case Op::Conv2dDwPw: break;  // CPU only: the step builder rejects it on CUDA
  }
}

void Plan::Impl::run_cuda(const void* const* in, void* const* out, Stream user) {
  const int prev = cuda_current_device();
  if (prev != device_id) cuda_set_device(device_id);
  struct Restore {
    int prev, dev;
    ~Restore() {
      if (prev != dev) try { cuda_set_device(prev); } catch (...) {}
    }
  } restore{prev, device_id};

  const Stream st = user ? user : stream;
  if (!user) {
    plan_cuda::event_record(legacy_done, plan_cuda::legacy_stream());
    plan_cuda::stream_wait(st, legacy_done);
  }
  if (runs > 0) plan_cuda::stream_wait(st, run_done);
  const size_t nin = inputs.size();
  for (size_t i = 0; i < nin; ++i) plan_cuda::copy_async(bases[kFirstIO + i], in[i], inputs[i].bytes, st);

  if (profiling) {
    plan_cuda::event_record(step_events[0], st);
    for (size_t i = 0; i < steps.size(); ++i) {
      exec_cuda(steps[i], st);
      plan_cuda::event_record(step_events[i + 1], st);
    }
  } else if (graph) {
    plan_cuda::graph_launch(graph, st);
  } else if (runs >= 2 && !graph_failed) {
    // Captured on the plan's own stream (capture records, it does not run), launched on st.
    plan_cuda::capture_begin(stream);
    try {
      for (Step& s : steps) exec_cuda(s, stream);
    } catch (...) {
      plan_cuda::graph_destroy(plan_cuda::capture_end(stream));
      throw;
    }
    graph = plan_cuda::capture_end(stream);
    if (graph) {
      plan_cuda::graph_launch(graph, st);
    } else {
      graph_failed = true;  // keep running the steps one by one
      for (Step& s : steps) exec_cuda(s, st);
    }
  } else {
    for (Step& s : steps) exec_cuda(s, st);
  }

  for (size_t j = 0; j < outputs.size(); ++j)
    plan_cuda::copy_async(out[j], bases[kFirstIO + nin + j], outputs[j].bytes, st);
  plan_cuda::event_record(run_done, st);
  ++runs;
  if (profiling) {
    plan_cuda::event_sync(step_events.back());
    for (size_t i = 0; i < steps.size(); ++i)
      times[i] = plan_cuda::event_seconds(step_events[i], step_events[i + 1]);
    profiled = true;
  }
  if (!user) plan_cuda::stream_sync(st);
}

void Plan::Impl::release_cuda() noexcept {
  // The last run may still be in flight on a caller's stream: let it finish with the buffers.
  if (runs > 0 && run_done) {
    try {
      plan_cuda::event_sync(run_done);
    } catch (...) {
    }
  }
  plan_cuda::graph_destroy(graph);
  graph = nullptr;
  for (void* e : step_events) plan_cuda::event_destroy(e);
  step_events.clear();
  plan_cuda::event_destroy(legacy_done);
  plan_cuda::event_destroy(run_done);
  legacy_done = run_done = nullptr;
  plan_cuda::stream_destroy(stream);
  stream = nullptr;
  for (void** p : {&dev_arena, &dev_workspace, &dev_constants, &dev_io}) {
    plan_cuda::free(*p);
    *p = nullptr;
  }
}
#endif

// ---------------------------------------------------------------------------------------------

Plan::Plan(const PlanSpec& spec) : impl_(std::make_unique<Impl>(spec)) {}
Plan::~Plan() = default;

void Plan::run(const void* const* inputs, void* const* outputs, Stream stream) {
  std::lock_guard<std::mutex> lock(impl_->mu);
#ifdef EV_WITH_CUDA
  if (impl_->cuda) return impl_->run_cuda(inputs, outputs, stream);
#endif
  impl_->run_cpu(inputs, outputs);
}

void Plan::set_profiling(bool on) {
  std::lock_guard<std::mutex> lock(impl_->mu);
#ifdef EV_WITH_CUDA
  if (on && impl_->cuda && impl_->step_events.empty()) {
    const int prev = cuda_current_device();
    cuda_set_device(impl_->device_id);
    try {
      for (size_t i = 0; i <= impl_->steps.size(); ++i)
        impl_->step_events.push_back(plan_cuda::event_create(true));
    } catch (...) {
      for (void* e : impl_->step_events) plan_cuda::event_destroy(e);
      impl_->step_events.clear();
      cuda_set_device(prev);
      throw;
    }
    cuda_set_device(prev);
  }
#endif
  impl_->profiling = on;
}

bool Plan::profiling() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->profiling;
}

std::vector<double> Plan::step_times() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->profiled ? impl_->times : std::vector<double>();
}

int Plan::num_inputs() const { return static_cast<int>(impl_->inputs.size()); }
int Plan::num_outputs() const { return static_cast<int>(impl_->outputs.size()); }
const PlanTensor& Plan::input(int i) const { return impl_->inputs.at(i); }
const PlanTensor& Plan::output(int i) const { return impl_->outputs.at(i); }
bool Plan::on_cuda() const { return impl_->cuda; }
int Plan::device_id() const { return impl_->device_id; }
std::string Plan::device() const {
  return impl_->cuda ? "cuda:" + std::to_string(impl_->device_id) : std::string("cpu");
}
DType Plan::dtype() const { return impl_->dt; }
int Plan::num_threads() const { return impl_->threads; }
int64_t Plan::arena_bytes() const { return impl_->arena_bytes; }
int64_t Plan::workspace_bytes() const { return impl_->workspace_bytes; }
int64_t Plan::packed_bytes() const { return impl_->packed_bytes; }
int Plan::num_steps() const { return static_cast<int>(impl_->steps.size()); }

}  // namespace ev
