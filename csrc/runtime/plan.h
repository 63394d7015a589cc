// The plan executor behind edgevision._C.Plan: a compiled graph (the "spec" that edgevision.graph
// builds) validated once at construction and then run as one tight loop
// of kernel calls, with every buffer planned ahead.
//
// Spec (plan_bindings.cpp turns the Python dict into PlanSpec; names below are the dict keys):
//   device       "cpu" | "cuda" | "cuda:N"
//   dtype        "float32" | "float16" (storage of every float value; float16 on CUDA only)
//   num_threads  CPU OpenMP threads of run() (0: omp_get_max_threads() when the Plan is built)
//   arena_bytes  size of the one arena that holds every intermediate value
//   constants    float32 arrays; copied once (converted to float16 / uploaded as the plan needs)
//   values       value id = position: {name, shape, kind, offset, index} where kind is
//                  "arena"    offset = byte offset in the arena, a multiple of 64
//                  "constant" index  = position in constants (same shape)
//                  "input"    index  = position in run()'s inputs (and in spec "inputs")
//                  "output"   index  = position in run()'s outputs (and in spec "outputs")
//                  "alias"    index  = base value id, offset = byte offset into the base: a view of
//                             the base's bytes with its own shape (Reshape, Squeeze, a Split part)
//                Shapes have 0 to 8 dims, each in [1, 2^31) (rank 0 is a scalar), at most 2^40
//                elements (2^31 - 1 on CUDA, whose kernels index with 32 bits).
//   steps        {op, name, inputs: [value id | -1 for an absent optional input], outputs: [id],
//                 attrs: {name: int | float | bool | str | [int]}}; the ops are kOps in plan.cpp,
//                 each with its inputs and attrs checked by its StepBuilder method there (what
//                 edgevision.graph.program.lower emits). conv2d_dw_pw, a CPU-only fusion, takes
//                 x, the depthwise weight and (optional) bias, the 1x1 weight, bias and residual, and
//                 conv2d's attrs for the depthwise with its activation as dw_act / dw_alpha / dw_beta.
//                 On the CPU, conv2d's optional max_pool = [kh, kw] (with max_pool_stride, default
//                 the kernel, and max_pool_pads, default 0) adds a max pool after its epilogue
//                 (conv2d_max_pool_cpu; the residual keeps the conv's output shape). Every op has
//                 exactly one output.
//   inputs, outputs  value ids of kind "input" / "output", in run() order.
// Every key listed is required except num_threads (default 0), optional step inputs at the end of
// the list, the epilogue attrs act ("none"), alpha/beta (required by leaky_relu, clip and
// hardsigmoid) and residual_after_act (false), and attrs an op's mode does not read (resize's
// nearest in bilinear mode, pad's value in reflect and edge modes). gemm's own "alpha" is its
// scale, so its activation takes act_alpha / act_beta instead (the names of edgevision.ops.gemm).
// Unknown keys and attrs are errors, so a misspelt attribute cannot be silently ignored. Ints may
// be numpy ints, lists may be tuples or 1-D numpy int arrays, and bool attrs also take 0 / 1.
//
// Validation: the constructor checks everything the run loop relies on and throws
// std::invalid_argument (ValueError in Python) naming the value or the step (index, op and name)
// on any inconsistency: unknown op or attr, wrong input count, a shape that differs from the op's
// formula (the shape structs of ops.h), a value outside the arena or outside its alias base, a bad
// dtype or id. It also checks the data flow, so a wrong memory plan is an error rather than a wrong
// answer: each value is written by at most one step and only if it is an arena or output value;
// every value is written before it is read; no step overwrites the bytes of a value that a later
// step still reads; a step's output overlaps none of its inputs except exactly, in place, for
// activation, binary (an operand of the output's shape) and batch_norm (x). Graph outputs must be
// written by some step.
//
// Running: run() resolves each operand as region base + byte offset (regions: arena, constants,
// each input, each output), so nothing is allocated per call. CPU: inputs and outputs are used in
// place, under exactly num_threads OpenMP threads (set and restored on the calling thread; the
// workspace was sized for that count). CUDA: the plan owns a stream, the device copies of the
// constants, and staging buffers for inputs and outputs, so every pointer inside the plan is fixed;
// the third run captures the steps into a CUDA graph that later runs launch (profiling runs the
// steps one by one instead, timed with events). With stream == 0 run() orders itself after the
// work queued on the legacy default stream and returns when the outputs are written; with a stream
// it only enqueues on that stream (the caller synchronises before reading the outputs).
//
// Thread safety: a Plan serialises its own run() calls with a mutex (set_profiling and step_times
// take it too), so sharing one Plan between threads is safe but runs one inference at a time; on
// CUDA a run also waits on the GPU for the previous run's work, whatever stream that used. Separate
// Plans share nothing (each has its own arena, workspace, constants, stream and graph), so N
// threads with N Plans run in parallel. The kernels keep no global state.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "ops.h"

namespace ev {

using AttrValue = std::variant<bool, int64_t, double, std::string, std::vector<int64_t>>;

enum class ValueKind : int { Arena = 0, Constant, Input, Output, Alias };

struct ValueSpec {
  std::string name;
  std::vector<int64_t> shape;
  ValueKind kind = ValueKind::Arena;
  std::optional<int64_t> offset;
  std::optional<int64_t> index;
};

struct StepSpec {
  std::string op, name;
  std::vector<int64_t> inputs, outputs;
  std::vector<std::pair<std::string, AttrValue>> attrs;
};

// Borrowed for the duration of the constructor only: the Plan copies the data.
struct ConstantSpec {
  const float* data = nullptr;
  std::vector<int64_t> shape;
};

struct PlanSpec {
  std::string device, dtype;
  int64_t num_threads = 0;
  int64_t arena_bytes = 0;
  std::vector<ConstantSpec> constants;
  std::vector<ValueSpec> values;
  std::vector<StepSpec> steps;
  std::vector<int64_t> inputs, outputs;
};

struct PlanTensor {
  std::string name;
  std::vector<int64_t> shape;
  int64_t bytes = 0;
};

class Plan {
 public:
  explicit Plan(const PlanSpec& spec);
  ~Plan();
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // inputs[i] / outputs[j]: dense tensors of input(i) / output(j)'s shape in dtype(), host memory
  // for a CPU plan, device memory on device_id() for a CUDA plan; the caller has checked them.
  void run(const void* const* inputs, void* const* outputs, Stream stream);

  void set_profiling(bool on);
  bool profiling() const;
  // Seconds per step of the last profiled run (empty before the first one).
  std::vector<double> step_times() const;

  int num_inputs() const;
  int num_outputs() const;
  const PlanTensor& input(int i) const;
  const PlanTensor& output(int i) const;
  bool on_cuda() const;
  int device_id() const;
  std::string device() const;
  DType dtype() const;
  int num_threads() const;
  int64_t arena_bytes() const;
  int64_t workspace_bytes() const;
  int64_t packed_bytes() const;  // CPU conv / gemm weights repacked for the kernels at build
  int num_steps() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

#ifdef EV_WITH_CUDA
// The CUDA runtime calls of the plan (plan_cuda.cu), so plan.cpp needs no CUDA header. Failures
// throw std::runtime_error; the *_destroy / free functions never throw.
namespace plan_cuda {
void* alloc(size_t bytes, const char* what);
void free(void* p) noexcept;
// Synchronous host -> device copy of float32 data, converted to float16 when dt is F16.
void upload(void* dst, const float* src, int64_t count, DType dt);
Stream stream_create();
void stream_destroy(Stream s) noexcept;
Stream legacy_stream();
void stream_sync(Stream s);
void copy_async(void* dst, const void* src, size_t bytes, Stream s);
void* event_create(bool timing);
void event_destroy(void* e) noexcept;
void event_record(void* e, Stream s);
void stream_wait(Stream s, void* e);
void event_sync(void* e);
double event_seconds(void* start, void* stop);
void capture_begin(Stream s);
// Ends the capture and instantiates it; nullptr when the capture failed, in which case the stream
// is usable again and no error is left pending.
void* capture_end(Stream s);
void graph_launch(void* exec, Stream s);
void graph_destroy(void* exec) noexcept;
}  // namespace plan_cuda
#endif

}  // namespace ev
