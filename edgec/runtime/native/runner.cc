// edgec-run: run an edgec artifact's model library on a device with no Python.
//
// Command line
//   edgec-run --lib lib/model.so --weights weights/model.params \
//             --input IN0.npy [--input IN1.npy ...] --output-dir DIR \
//             [--repeat N] [--warmup W]
//
// The .npy contract
//   * inputs are given in the order the model's `main` takes them (the manifest's "inputs" list);
//     each is a C-ordered .npy (format 1.0/2.0/3.0) of a little-endian bool, int8..64, uint8..64,
//     float16, float32 or float64 array;
//   * weights are the TVM param dict in --weights; they are passed after the inputs, ordered
//     w0, w1, ... (edgec names them by their position in `main`'s parameter list);
//   * outputs (a tensor, or a tuple flattened depth-first) are written as DIR/output0.npy,
//     DIR/output1.npy, ... in the manifest's "outputs" order.
//   * with --repeat N, the model runs W warm-up times and then N timed times, and one JSON line
//     {"runs": N, "median_ms": ..., "p10_ms": ..., "p90_ms": ..., "times_ms": [...]} goes to stdout.
//
// Exit status: 0 success, 2 bad command line or unreadable files, 1 the model failed.

#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>
#include <tvm/runtime/device_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Host memory aligned as the TVM runtime expects for vectorized kernels.
struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t size = std::max<size_t>(ffi::GetDataSize(*t), 1);
    size_t align = tvm::runtime::kAllocAlignment;
    t->data = std::aligned_alloc(align, (size + align - 1) / align * align);
    if (t->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

struct DTypeName {
  const char* descr;  // numpy's dtype.str without the byte-order character
  DLDataType dl;
};

const DTypeName kDTypes[] = {
    {"b1", {kDLBool, 8, 1}},     {"i1", {kDLInt, 8, 1}},     {"i2", {kDLInt, 16, 1}},
    {"i4", {kDLInt, 32, 1}},     {"i8", {kDLInt, 64, 1}},    {"u1", {kDLUInt, 8, 1}},
    {"u2", {kDLUInt, 16, 1}},    {"u4", {kDLUInt, 32, 1}},   {"u8", {kDLUInt, 64, 1}},
    {"f2", {kDLFloat, 16, 1}},   {"f4", {kDLFloat, 32, 1}},  {"f8", {kDLFloat, 64, 1}},
};

DLDataType DTypeFromDescr(const std::string& descr, const std::string& path) {
  // '<' little-endian, '|' not applicable (one byte), '=' native (little-endian on our targets)
  if (descr.size() == 3 && (descr[0] == '<' || descr[0] == '|' || descr[0] == '=')) {
    for (const auto& d : kDTypes) {
      if (descr.compare(1, 2, d.descr) == 0) return d.dl;
    }
  }
  throw UsageError(path + ": unsupported .npy dtype '" + descr + "'");
}

std::string DescrFromDType(DLDataType t) {
  for (const auto& d : kDTypes) {
    if (d.dl.code == t.code && d.dl.bits == t.bits && t.lanes == 1) {
      return std::string(t.bits == 8 ? "|" : "<") + d.descr;
    }
  }
  throw std::runtime_error("output has a dtype .npy cannot hold (code " + std::to_string(t.code) +
                           ", bits " + std::to_string(t.bits) + ")");
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The value of 'key' in a .npy header dict such as {'descr': '<f4', 'fortran_order': False, ...}.
std::string HeaderField(const std::string& header, const std::string& key, const std::string& path) {
  size_t at = header.find("'" + key + "'");
  if (at == std::string::npos) throw UsageError(path + ": .npy header has no '" + key + "'");
  at = header.find(':', at);
  if (at == std::string::npos) throw UsageError(path + ": malformed .npy header");
  at = header.find_first_not_of(' ', at + 1);
  char open = header[at];
  size_t end;
  if (open == '\'') {
    end = header.find('\'', at + 1);
    return header.substr(at + 1, end - at - 1);
  }
  if (open == '(') {
    end = header.find(')', at);
    return header.substr(at + 1, end - at - 1);
  }
  end = header.find_first_of(",}", at);
  return header.substr(at, end - at);
}

ffi::Tensor ReadNpy(const std::string& path) {
  std::string data = ReadFile(path);
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    throw UsageError(path + " is not a .npy file");
  }
  int major = static_cast<unsigned char>(data[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    offset = 10;
  } else {
    if (data.size() < 12) throw UsageError(path + " is truncated");
    header_len = 0;
    for (int i = 3; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(data[8 + i]);
    offset = 12;
  }
  if (offset + header_len > data.size()) throw UsageError(path + " is truncated");
  std::string header = data.substr(offset, header_len);
  offset += header_len;
  DLDataType dtype = DTypeFromDescr(HeaderField(header, "descr", path), path);
  if (HeaderField(header, "fortran_order", path) != "False") {
    throw UsageError(path + ": Fortran-ordered arrays are not supported; save a C-ordered array");
  }
  std::vector<int64_t> shape;
  std::stringstream dims(HeaderField(header, "shape", path));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    if (dim.find_first_not_of(' ') != std::string::npos) shape.push_back(std::stoll(dim));
  }
  ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), ffi::ShapeView(shape.data(), shape.size()),
                                           dtype, DLDevice{kDLCPU, 0});
  size_t nbytes = ffi::GetDataSize(*t.GetDLTensorPtr());
  if (data.size() - offset < nbytes) throw UsageError(path + " is truncated");
  std::memcpy(t.data_ptr(), data.data() + offset, nbytes);
  return t;
}

void WriteNpy(const std::string& path, const ffi::Tensor& tensor) {
  const DLTensor* t = tensor.GetDLTensorPtr();
  if (t->device.device_type != kDLCPU) throw std::runtime_error("output is not on the CPU");
  if (!tensor.IsContiguous()) throw std::runtime_error("output is not contiguous");
  std::string shape;
  for (int i = 0; i < t->ndim; ++i) {
    shape += std::to_string(t->shape[i]);
    if (t->ndim == 1) shape += ",";  // numpy writes a 1-tuple as (n,)
    else if (i + 1 < t->ndim) shape += ", ";
  }
  std::string header = "{'descr': '" + DescrFromDType(t->dtype) + "', 'fortran_order': False, 'shape': (" +
                       shape + "), }";
  // pad so that the data starts on a 64-byte boundary, as numpy does
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::ofstream f(path, std::ios::binary);
  if (!f) throw UsageError("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  char len[2] = {static_cast<char>(header.size() & 0xff), static_cast<char>(header.size() >> 8)};
  f.write(len, 2);
  f.write(header.data(), header.size());
  f.write(static_cast<const char*>(t->data) + t->byte_offset, ffi::GetDataSize(*t));
  if (!f) throw UsageError("cannot write " + path);
}

void Flatten(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto t = value.as<ffi::Tensor>()) {
    out->push_back(*t);
  } else if (auto arr = value.as<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& v : *arr) Flatten(v, out);
  } else {
    throw std::runtime_error("main returned a value that is neither a tensor nor a tuple: " +
                             std::string(value.GetTypeKey()));
  }
}

struct Options {
  std::string lib, weights, output_dir;
  std::vector<std::string> inputs;
  int repeat = 0, warmup = 3;
};

int ParseCount(const std::string& flag, const std::string& value, int lo) {
  try {
    size_t used = 0;
    int n = std::stoi(value, &used);
    if (used == value.size() && n >= lo) return n;
  } catch (const std::exception&) {
  }
  throw UsageError(flag + " takes an integer >= " + std::to_string(lo) + ", not '" + value + "'");
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") throw UsageError("");
    if (i + 1 >= argc) throw UsageError(flag + " needs a value");
    std::string value = argv[++i];
    if (flag == "--lib") o.lib = value;
    else if (flag == "--weights") o.weights = value;
    else if (flag == "--input") o.inputs.push_back(value);
    else if (flag == "--output-dir") o.output_dir = value;
    else if (flag == "--repeat") o.repeat = ParseCount(flag, value, 1);
    else if (flag == "--warmup") o.warmup = ParseCount(flag, value, 0);
    else throw UsageError("unknown option " + flag);
  }
  if (o.lib.empty()) throw UsageError("--lib is required");
  if (o.output_dir.empty() && o.repeat == 0) throw UsageError("give --output-dir, --repeat, or both");
  return o;
}

std::vector<ffi::Tensor> LoadWeights(const std::string& path) {
  std::vector<ffi::Tensor> weights;
  if (path.empty()) return weights;
  std::string blob = ReadFile(path);
  ffi::Function load = ffi::Function::GetGlobalRequired("runtime.LoadParams");
  auto params = load(ffi::Bytes(blob)).cast<ffi::Map<ffi::String, ffi::Tensor>>();
  for (size_t i = 0; i < params.size(); ++i) {
    auto it = params.find("w" + std::to_string(i));
    if (it == params.end()) throw UsageError(path + " has no weight w" + std::to_string(i));
    weights.push_back((*it).second);
  }
  return weights;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  double pos = q * (v.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

int Run(const Options& o) {
  ffi::Module lib = ffi::Module::LoadFromFile(o.lib);
  ffi::Optional<ffi::Function> load_exec = lib->GetFunction("vm_load_executable", false);
  if (!load_exec.has_value()) throw UsageError(o.lib + " is not a Relax VM executable");
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  constexpr int kPooledAllocator = 2;  // relax.VirtualMachine.POOLED_ALLOCATOR
  vm->GetFunction("vm_initialization", false).value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  ffi::Function main_fn = vm->GetFunction("main", false).value();

  std::vector<ffi::Tensor> args;
  for (const auto& path : o.inputs) args.push_back(ReadNpy(path));
  for (auto& w : LoadWeights(o.weights)) args.push_back(w);
  std::vector<ffi::AnyView> views(args.begin(), args.end());

  auto call = [&]() {
    ffi::Any result;
    main_fn.CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);
    return result;
  };
  ffi::Any result = call();
  if (!o.output_dir.empty()) {
    std::vector<ffi::Tensor> outputs;
    Flatten(result, &outputs);
    for (size_t i = 0; i < outputs.size(); ++i) {
      WriteNpy(o.output_dir + "/output" + std::to_string(i) + ".npy", outputs[i]);
    }
  }
  if (o.repeat > 0) {
    for (int i = 0; i < o.warmup; ++i) call();
    std::vector<double> ms;
    for (int i = 0; i < o.repeat; ++i) {
      auto start = std::chrono::steady_clock::now();
      call();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("{\"runs\": %d, \"median_ms\": %.6f, \"p10_ms\": %.6f, \"p90_ms\": %.6f, \"times_ms\": [",
                o.repeat, Percentile(ms, 0.5), Percentile(ms, 0.1), Percentile(ms, 0.9));
    for (size_t i = 0; i < ms.size(); ++i) std::printf("%s%.6f", i ? ", " : "", ms[i]);
    std::printf("]}\n");
  }
  return 0;
}

const char* kUsage =
    "usage: edgec-run --lib lib/model.so --weights weights/model.params --input IN.npy ... "
    "--output-dir DIR [--repeat N] [--warmup W]";

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& err) {
    if (*err.what()) std::fprintf(stderr, "edgec-run: %s\n", err.what());
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  } catch (const ffi::Error& err) {
    std::fprintf(stderr, "edgec-run: %s: %s\n", err.kind().c_str(), err.message().c_str());
    return 1;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "edgec-run: %s\n", err.what());
    return 1;
  }
}
