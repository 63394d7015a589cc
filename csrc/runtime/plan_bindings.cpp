// pybind11 binding of the plan executor, edgevision._C.Plan: converts the spec dict into PlanSpec
// (plain C++ types; a malformed entry is a ValueError naming its key), and checks run()'s tensors
// against the plan's inputs and outputs before releasing the GIL for the whole run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "runtime/plan.h"
#include "runtime/plan_bindings.h"
#include "tensor.h"

namespace py = pybind11;

namespace ev {
namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument("plan spec: " + where + " " + what);
}

std::string type_name(py::handle h) {
  return py::str(py::type::handle_of(h).attr("__name__")).cast<std::string>();
}

// numpy's scalar base types (numpy is a core dependency of edgevision), looked up once when the
// module is imported: a lazy lookup under a static guard could deadlock against the GIL. Never
// freed, so nothing is released after the interpreter shuts down.
struct NumpyTypes {
  py::object bool_, floating;
};
const NumpyTypes* numpy_types = nullptr;

bool is_bool(py::handle h) {
  return PyBool_Check(h.ptr()) || py::isinstance(h, numpy_types->bool_);
}
// numpy arrays define __index__ too (it fails unless 0-d): only scalars count as ints here.
bool is_int(py::handle h) {
  return !is_bool(h) && PyIndex_Check(h.ptr()) &&
         !(py::isinstance<py::array>(h) && py::reinterpret_borrow<py::array>(h).ndim() != 0);
}
bool is_float(py::handle h) {
  return PyFloat_Check(h.ptr()) || py::isinstance(h, numpy_types->floating);
}
bool is_list(py::handle h) {
  return PyList_Check(h.ptr()) || PyTuple_Check(h.ptr()) ||
         (py::isinstance<py::array>(h) && py::reinterpret_borrow<py::array>(h).ndim() == 1);
}

int64_t to_int(py::handle h, const std::string& where) {
  if (!is_int(h)) bad(where, "must be an int, got " + type_name(h));
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(h.ptr()));
  if (!i) {
    PyErr_Clear();
    bad(where, "must be an int");
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow) bad(where, "is out of the int64 range");
  return static_cast<int64_t>(v);
}

std::string to_str(py::handle h, const std::string& where) {
  if (!PyUnicode_Check(h.ptr())) bad(where, "must be a str, got " + type_name(h));
  return h.cast<std::string>();
}

std::vector<int64_t> to_ints(py::handle h, const std::string& where) {
  if (!is_list(h)) bad(where, "must be a list of ints, got " + type_name(h));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(h);
  std::vector<int64_t> out;
  for (size_t i = 0; i < seq.size(); ++i) out.push_back(to_int(seq[i], where + "[" + std::to_string(i) + "]"));
  return out;
}

AttrValue to_attr(py::handle h, const std::string& where) {
  if (is_bool(h)) return AttrValue(h.cast<bool>());
  if (is_int(h)) return AttrValue(to_int(h, where));
  if (is_float(h)) return AttrValue(h.cast<double>());
  if (PyUnicode_Check(h.ptr())) return AttrValue(h.cast<std::string>());
  if (is_list(h)) return AttrValue(to_ints(h, where));
  bad(where, "must be an int, float, bool, str or list of ints, got " + type_name(h));
}

py::dict to_dict(py::handle h, const std::string& where, std::initializer_list<const char*> keys) {
  if (!PyDict_Check(h.ptr())) bad(where, "must be a dict, got " + type_name(h));
  py::dict d = py::reinterpret_borrow<py::dict>(h);
  for (auto item : d) {
    const char* name = PyUnicode_Check(item.first.ptr()) ? PyUnicode_AsUTF8(item.first.ptr()) : nullptr;
    if (!name) PyErr_Clear();
    bool known = false;
    for (const char* k : keys) known = known || (name && std::strcmp(name, k) == 0);
    if (!known) {
      std::string names;
      for (const char* k : keys) names += (names.empty() ? "'" : ", '") + std::string(k) + "'";
      bad(where, "has the unknown key " + std::string(py::repr(item.first)) + "; expected " + names);
    }
  }
  return d;
}

py::handle key(const py::dict& d, const char* k, const std::string& where) {
  PyObject* v = PyDict_GetItemString(d.ptr(), k);
  if (!v) bad(where, std::string("misses the key '") + k + "'");
  return v;
}

py::sequence to_seq(py::handle h, const std::string& where) {
  if (!PyList_Check(h.ptr()) && !PyTuple_Check(h.ptr())) bad(where, "must be a list, got " + type_name(h));
  return py::reinterpret_borrow<py::sequence>(h);
}

// `keep` holds the contiguous constant arrays alive while the Plan copies them.
PlanSpec to_spec(py::handle obj, std::vector<py::object>* keep) {
  if (!PyDict_Check(obj.ptr()))
    throw py::type_error("Plan: spec must be a dict (see edgevision.graph.compile_spec), got " + type_name(obj));
  py::dict d = to_dict(obj, "spec", {"device", "dtype", "num_threads", "arena_bytes", "constants", "values",
                                     "steps", "inputs", "outputs"});
  PlanSpec s;
  s.device = to_str(key(d, "device", "spec"), "spec['device']");
  s.dtype = to_str(key(d, "dtype", "spec"), "spec['dtype']");
  if (d.contains("num_threads")) s.num_threads = to_int(d["num_threads"], "spec['num_threads']");
  s.arena_bytes = to_int(key(d, "arena_bytes", "spec"), "spec['arena_bytes']");

  py::sequence consts = to_seq(key(d, "constants", "spec"), "spec['constants']");
  for (size_t i = 0; i < consts.size(); ++i) {
    const std::string where = "spec['constants'][" + std::to_string(i) + "]";
    py::object c = consts[i];
    if (!py::isinstance<py::array>(c)) bad(where, "must be a numpy array, got " + type_name(c));
    if (!py::reinterpret_borrow<py::array>(c).dtype().is(py::dtype::of<float>()))
      bad(where, "must be float32, got " + std::string(py::str(c.attr("dtype"))));
    auto arr = py::array_t<float, py::array::c_style>::ensure(c);
    if (!arr) {
      PyErr_Clear();
      bad(where, "could not be made contiguous");
    }
    ConstantSpec cs;
    cs.data = arr.data();
    cs.shape.assign(arr.shape(), arr.shape() + arr.ndim());
    keep->push_back(arr);
    s.constants.push_back(std::move(cs));
  }

  py::sequence values = to_seq(key(d, "values", "spec"), "spec['values']");
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string where = "spec['values'][" + std::to_string(i) + "]";
    py::dict v = to_dict(values[i], where, {"name", "shape", "kind", "offset", "index"});
    ValueSpec vs;
    vs.name = to_str(key(v, "name", where), where + "['name']");
    vs.shape = to_ints(key(v, "shape", where), where + "['shape']");
    const std::string kind = to_str(key(v, "kind", where), where + "['kind']");
    if (kind == "arena") vs.kind = ValueKind::Arena;
    else if (kind == "constant") vs.kind = ValueKind::Constant;
    else if (kind == "input") vs.kind = ValueKind::Input;
    else if (kind == "output") vs.kind = ValueKind::Output;
    else if (kind == "alias") vs.kind = ValueKind::Alias;
    else bad(where + "['kind']", "is '" + kind + "'; expected 'arena', 'constant', 'input', 'output' or 'alias'");
    if (v.contains("offset")) vs.offset = to_int(v["offset"], where + "['offset']");
    if (v.contains("index")) vs.index = to_int(v["index"], where + "['index']");
    s.values.push_back(std::move(vs));
  }

  py::sequence steps = to_seq(key(d, "steps", "spec"), "spec['steps']");
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string where = "spec['steps'][" + std::to_string(i) + "]";
    py::dict st = to_dict(steps[i], where, {"op", "name", "inputs", "outputs", "attrs"});
    StepSpec ss;
    ss.op = to_str(key(st, "op", where), where + "['op']");
    ss.name = to_str(key(st, "name", where), where + "['name']");
    where = "step " + std::to_string(i) + " (" + ss.op + " '" + ss.name + "')";
    ss.inputs = to_ints(key(st, "inputs", where), where + " 'inputs'");
    ss.outputs = to_ints(key(st, "outputs", where), where + " 'outputs'");
    py::handle attrs = key(st, "attrs", where);
    if (!PyDict_Check(attrs.ptr())) bad(where + " 'attrs'", "must be a dict, got " + type_name(attrs));
    for (auto item : py::reinterpret_borrow<py::dict>(attrs)) {
      const std::string name = to_str(item.first, where + " attribute name");
      ss.attrs.emplace_back(name, to_attr(item.second, where + " attribute '" + name + "'"));
    }
    s.steps.push_back(std::move(ss));
  }
  s.inputs = to_ints(key(d, "inputs", "spec"), "spec['inputs']");
  s.outputs = to_ints(key(d, "outputs", "spec"), "spec['outputs']");
  return s;
}

std::unique_ptr<Plan> make_plan(py::handle spec) {
  std::vector<py::object> keep;
  const PlanSpec s = to_spec(spec, &keep);
  py::gil_scoped_release release;  // copying and uploading constants touches no Python object
  return std::make_unique<Plan>(s);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// One run() argument list checked against the plan's tensors.
std::vector<View> to_views(const Plan& plan, py::handle list, bool outputs) {
  const char* what = outputs ? "outputs" : "inputs";
  const int want = outputs ? plan.num_outputs() : plan.num_inputs();
  if (!PyList_Check(list.ptr()) && !PyTuple_Check(list.ptr()))
    throw py::type_error(detail::str("Plan.run: ", what, " must be a list of ", want,
                                     " tensors, got ", type_name(list)));
  py::sequence seq = py::reinterpret_borrow<py::sequence>(list);
  EV_CHECK(static_cast<int>(seq.size()) == want, "Plan.run: expected ", want, " ", what, ", got ",
           seq.size());
  const DType dt = plan.dtype();
  const int64_t esize = dt == DType::F16 ? 2 : 4;
  std::vector<View> views;
  for (int i = 0; i < want; ++i) {
    const PlanTensor& t = outputs ? plan.output(i) : plan.input(i);
    // For error messages; snprintf into the stack, since run() is the per-inference hot path.
    char name[192];
    std::snprintf(name, sizeof name, "%s[%d] ('%.160s')", what, i, t.name.c_str());
    View v = to_view(seq[i], "Plan.run", name);
    const bool device_ok = plan.on_cuda()
                               ? v.device == DeviceKind::CUDA && v.device_id == plan.device_id()
                               : v.device == DeviceKind::CPU;
    EV_CHECK(device_ok, "Plan.run: ", name, " is on ", v.device_str(), " but the plan runs on ",
             plan.device());
    if (v.dtype != dt)
      throw py::type_error(detail::str("Plan.run: ", name, " has dtype ", dtype_name(v.dtype),
                                       "; the plan expects ", dtype_name(dt)));
    EV_CHECK(v.shape == t.shape, "Plan.run: ", name, " has shape ", v.shape_str(), "; the plan expects ",
             shape_str(t.shape));
    EV_CHECK(reinterpret_cast<std::uintptr_t>(v.data) % esize == 0, "Plan.run: ", name,
             " is not aligned to its element size");
    if (outputs && py::isinstance<py::array>(seq[i]))
      EV_CHECK(py::reinterpret_borrow<py::array>(seq[i]).writeable(), "Plan.run: ", name,
               " is a read-only array");
    views.push_back(std::move(v));
  }
  return views;
}

void run(Plan& plan, py::handle inputs, py::handle outputs, std::uintptr_t stream) {
  EV_CHECK(plan.on_cuda() || stream == 0, "Plan.run: stream is for CUDA plans; this plan runs on the CPU");
  const std::vector<View> in = to_views(plan, inputs, false);
  const std::vector<View> out = to_views(plan, outputs, true);
  // On the CPU the plan reads inputs and writes outputs in place, so they must not share memory.
  for (size_t j = 0; j < out.size(); ++j) {
    const char* o0 = static_cast<const char*>(out[j].data);
    const char* o1 = o0 + plan.output(static_cast<int>(j)).bytes;
    auto clash = [&](const View& v, int64_t bytes) {
      const char* v0 = static_cast<const char*>(v.data);
      return v.device == out[j].device && v0 < o1 && o0 < v0 + bytes;
    };
    for (size_t k = 0; k < j; ++k)
      EV_CHECK(!clash(out[k], plan.output(static_cast<int>(k)).bytes), "Plan.run: outputs[", j,
               "] and outputs[", k, "] share memory");
    if (!plan.on_cuda())
      for (size_t i = 0; i < in.size(); ++i)
        EV_CHECK(!clash(in[i], plan.input(static_cast<int>(i)).bytes), "Plan.run: outputs[", j,
                 "] shares memory with inputs[", i, "]");
  }
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (const View& v : in) in_ptrs.push_back(v.data);
  for (const View& v : out) out_ptrs.push_back(v.data);
  py::gil_scoped_release release;  // `in` and `out` (owning the Python tensors) outlive this scope
  plan.run(in_ptrs.data(), out_ptrs.data(), reinterpret_cast<Stream>(stream));
}

py::list tensors(const Plan& p, bool outputs) {
  py::list l;
  const int n = outputs ? p.num_outputs() : p.num_inputs();
  for (int i = 0; i < n; ++i) {
    const PlanTensor& t = outputs ? p.output(i) : p.input(i);
    l.append(py::make_tuple(t.name, py::tuple(py::cast(t.shape))));
  }
  return l;
}

}  // namespace

void bind_plan(py::module_& m) {
  py::module_ np = py::module_::import("numpy");
  numpy_types = new NumpyTypes{np.attr("bool_"), np.attr("floating")};
  py::class_<Plan>(m, "Plan", R"doc(A compiled graph run in one C++ call (see csrc/runtime/plan.h).

Plan(spec: dict) validates the spec once (ValueError naming the value or step on any inconsistency),
allocates the arena and workspace and copies the constants. run(inputs, outputs, stream=0) fills the
output tensors; the GIL is released for the whole run and nothing is allocated. One Plan serialises
its run() calls (a mutex); separate Plans run in parallel.)doc")
      .def(py::init(&make_plan), py::arg("spec"))
      .def("run", &run, py::arg("inputs"), py::arg("outputs"), py::arg("stream") = 0,
           "Run the plan: inputs/outputs are lists of dense tensors of the plan's shapes and dtype "
           "(numpy on the CPU, DLPack CUDA tensors on CUDA). stream: a CUDA stream handle; 0 uses the "
           "plan's own stream and returns when the outputs are written.")
      .def("set_profiling", &Plan::set_profiling, py::arg("on"), py::call_guard<py::gil_scoped_release>(),
           "Time every step of the following runs (on CUDA this turns the CUDA graph off).")
      .def("step_times", &Plan::step_times, py::call_guard<py::gil_scoped_release>(),
           "Seconds per step of the last profiled run (empty before one).")
      .def_property_readonly("profiling", &Plan::profiling)
      .def_property_readonly("arena_bytes", &Plan::arena_bytes)
      .def_property_readonly("workspace_bytes", &Plan::workspace_bytes)
      .def_property_readonly("packed_bytes", &Plan::packed_bytes)
      .def_property_readonly("num_steps", &Plan::num_steps)
      .def_property_readonly("num_threads", &Plan::num_threads)
      .def_property_readonly("device", &Plan::device)
      .def_property_readonly("dtype", [](const Plan& p) { return std::string(dtype_name(p.dtype())); })
      .def_property_readonly("inputs", [](const Plan& p) { return tensors(p, false); },
                             "[(name, shape)] of run()'s inputs")
      .def_property_readonly("outputs", [](const Plan& p) { return tensors(p, true); },
                             "[(name, shape)] of run()'s outputs")
      .def("__repr__", [](const Plan& p) {
        return detail::str("<edgevision._C.Plan ", p.num_steps(), " steps on ", p.device(), ", ",
                           dtype_name(p.dtype()), ", arena ", p.arena_bytes(), " bytes>");
      });
}

}  // namespace ev
