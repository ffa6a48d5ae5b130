// irgraph native runner: greedy generation from an irgraph TVM artifact, no Python needed.
//
//   irgraph_runner ARTIFACT_DIR --prompt 1,2,3 --steps 8 [--logits out.f32]
//
// Reads ARTIFACT_DIR/manifest.json (the `forward` signature: inputs, weight arguments and
// their layouts, outputs), memory-loads weights.safetensors (packing linear weights marked
// `packed{nb}` into [N/nb, K, nb] once), loads model.so into the Relax VM of the TVM runtime
// (libtvm_runtime.so + libtvm_ffi.so from the apache-tvm / apache-tvm-ffi wheels) and runs
// the prompt through `forward`, then one token per call with the KV cache the model returns
// (`present.*` fed back as `past_key_values.*`). Prints the generated token ids on one line;
// --logits writes float32 logits [positions, vocab] for every position fed (prompt + all but
// the last generated token), so a test can compare them with the reference interpreter.
// Encoder-decoder artifacts (a `decoder_input_ids` input) take the prompt as the encoder's
// input, fed with every call, and decode from the manifest's meta.decoder_start_token_id;
// their logits are the decoder positions'.
#include <dlpack/dlpack.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;
using JObject = ffi::Map<ffi::Any, ffi::Any>;
using JArray = ffi::Array<ffi::Any>;

namespace {

struct CPUAlloc {
  void AllocData(DLTensor* t) { t->data = std::malloc(ffi::GetDataSize(*t)); }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

[[noreturn]] void Fail(const std::string& msg) { throw std::runtime_error(msg); }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

ffi::Any Get(const JObject& obj, const char* key) {
  auto it = obj.find(ffi::String(key));
  if (it == obj.end()) Fail(std::string("manifest: missing key ") + key);
  return (*it).second;
}
std::string Str(const ffi::Any& v) { return std::string(v.cast<ffi::String>()); }
JObject Obj(const ffi::Any& v) { return v.cast<JObject>(); }
JArray Arr(const ffi::Any& v) { return v.cast<JArray>(); }

DLDataType DType(const std::string& name) {
  if (name == "f32") return DLDataType{kDLFloat, 32, 1};
  if (name == "f16") return DLDataType{kDLFloat, 16, 1};
  if (name == "i64") return DLDataType{kDLInt, 64, 1};
  if (name == "i32") return DLDataType{kDLInt, 32, 1};
  if (name == "i8") return DLDataType{kDLInt, 8, 1};  // quantize-kv's int8 cache
  if (name == "u8") return DLDataType{kDLUInt, 8, 1};
  Fail("runner supports f32/f16/i64/i32/i8/u8 tensors, got " + name);
}

// safetensors dtype -> the tensor type its bytes hold (quantized weights store U8 nibbles or
// I8 values, F16 or F32 scales and I8 zero points; PanGu-Σ's routes are I64)
DLDataType StoredType(const std::string& name, const std::string& tensor) {
  if (name == "F32") return DLDataType{kDLFloat, 32, 1};
  if (name == "F16") return DLDataType{kDLFloat, 16, 1};
  if (name == "I64") return DLDataType{kDLInt, 64, 1};
  if (name == "I8") return DLDataType{kDLInt, 8, 1};
  if (name == "U8") return DLDataType{kDLUInt, 8, 1};
  Fail("runner supports F32/F16/I64/I8/U8 weights, " + tensor + " is " + name);
}

ffi::Tensor Empty(const std::vector<int64_t>& shape, DLDataType dtype) {
  return ffi::Tensor::FromNDAlloc(CPUAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype,
                                  DLDevice{kDLCPU, 0});
}

ffi::Tensor I64(const std::vector<int64_t>& shape, const std::vector<int64_t>& values) {
  ffi::Tensor t = Empty(shape, DLDataType{kDLInt, 64, 1});
  std::memcpy(t.data_ptr(), values.data(), values.size() * sizeof(int64_t));
  return t;
}

struct IO {
  std::string name, dtype;
  std::vector<std::string> shape;  // ints as text, or symbolic names (batch, seq, past, past+seq)
};

std::vector<IO> ReadIO(const JArray& arr) {
  std::vector<IO> out;
  for (const ffi::Any& e : arr) {
    JObject o = Obj(e);
    IO io{Str(Get(o, "name")), Str(Get(o, "dtype")), {}};
    for (const ffi::Any& d : Arr(Get(o, "shape"))) {
      io.shape.push_back(d.try_cast<int64_t>() ? std::to_string(d.cast<int64_t>()) : Str(d));
    }
    out.push_back(io);
  }
  return out;
}

// Weights: safetensors (8-byte header length, JSON header, raw little-endian data).
std::vector<ffi::Tensor> LoadWeights(const std::string& path, const JArray& weight_args) {
  std::string blob = ReadFile(path);
  uint64_t n = 0;
  std::memcpy(&n, blob.data(), 8);
  JObject header = Obj(ffi::json::Parse(ffi::String(blob.substr(8, n))));
  const char* data = blob.data() + 8 + n;
  std::vector<ffi::Tensor> out;
  for (const ffi::Any& e : weight_args) {
    JObject arg = Obj(e);
    std::string name = Str(Get(arg, "name")), layout = Str(Get(arg, "layout"));
    auto it = header.find(ffi::String(name));
    if (it == header.end()) Fail("weights: no tensor " + name);
    JObject entry = Obj((*it).second);
    std::string dtype = Str(Get(entry, "dtype"));
    JArray offsets = Arr(Get(entry, "data_offsets"));
    std::vector<int64_t> shape;
    for (const ffi::Any& d : Arr(Get(arg, "shape"))) shape.push_back(d.cast<int64_t>());
    DLDataType type = StoredType(dtype, name);
    const size_t size = type.bits / 8;
    const char* src = data + offsets[0].cast<int64_t>();
    ffi::Tensor t = Empty(shape, type);
    char* dst = static_cast<char*>(t.data_ptr());
    size_t count = 1;
    for (int64_t d : shape) count *= d;
    const int64_t begin = offsets[0].cast<int64_t>(), end = offsets[1].cast<int64_t>();
    if (begin < 0 || end < begin || static_cast<uint64_t>(end) > blob.size() - 8 - n ||
        static_cast<size_t>(end - begin) != count * size)
      Fail("weights: " + name + " holds " + std::to_string(end - begin) + " bytes, its shape needs " +
           std::to_string(count * size));
    if (layout == "plain") {
      std::memcpy(dst, src, count * size);
    } else {  // packed{nb}: W[N, C] -> Wp[N/nb, C, nb], Wp[b, c, j] = W[b*nb + j, c], any dtype
      int64_t blocks = shape[0], c = shape[1], nb = shape[2];
      for (int64_t b = 0; b < blocks; ++b)
        for (int64_t cc = 0; cc < c; ++cc)
          for (int64_t j = 0; j < nb; ++j)
            std::memcpy(dst + ((b * c + cc) * nb + j) * size, src + ((b * nb + j) * c + cc) * size,
                        size);
    }
    out.push_back(t);
  }
  return out;
}

std::vector<int64_t> ParseIds(const std::string& text) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) ids.push_back(std::stoll(item));
  if (ids.empty()) Fail("--prompt needs at least one token id");
  return ids;
}

int Run(int argc, char** argv) {
  if (argc < 2)
    Fail("usage: irgraph_runner ARTIFACT_DIR --prompt 1,2,3 --steps N [--logits FILE] [--domain D]");
  std::string dir = argv[1], prompt_text, logits_path;
  int steps = 8;
  int64_t domain = 0;  // domain_ids of models that route by domain (PanGu-Σ)
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--prompt") prompt_text = argv[i + 1];
    else if (flag == "--steps") steps = std::atoi(argv[i + 1]);
    else if (flag == "--domain") domain = std::stoll(argv[i + 1]);
    else if (flag == "--logits") logits_path = argv[i + 1];
    else Fail("unknown option " + flag);
  }
  std::vector<int64_t> prompt = ParseIds(prompt_text);
  JObject manifest = Obj(ffi::json::Parse(ffi::String(ReadFile(dir + "/manifest.json"))));
  JObject info = Obj(Get(manifest, "tvm"));
  std::vector<IO> inputs = ReadIO(Arr(Get(manifest, "inputs")));
  std::vector<IO> outputs = ReadIO(Arr(Get(manifest, "outputs")));
  std::vector<ffi::Tensor> weights = LoadWeights(dir + "/weights.safetensors", Arr(Get(info, "weight_args")));

  std::string library = Str(Get(info, "library"));
  if (library.empty() || library == "." || library == ".." ||
      library.find('/') != std::string::npos || library.find('\\') != std::string::npos)
    Fail("manifest: tvm.library must name a file in the artifact folder, got " + library);
  ffi::Module lib = ffi::Module::LoadFromFile(ffi::String(dir + "/" + library));
  ffi::Module vm = lib->GetFunction("vm_load_executable", true).value()().cast<ffi::Module>();
  vm->GetFunction("vm_initialization", true).value()(static_cast<int>(kDLCPU), 0, 2);  // pooled allocator
  ffi::Function forward = vm->GetFunction(Str(Get(info, "function")), true).value();

  std::map<std::string, ffi::Tensor> cache;  // past_key_values.* by name, starting empty (past = 0)
  for (const IO& io : inputs) {
    if (io.name.rfind("past_key_values.", 0) != 0) continue;
    std::vector<int64_t> shape;
    for (const std::string& d : io.shape)
      shape.push_back(d == "batch" ? 1 : (std::isdigit(d[0]) ? std::stoll(d) : 0));
    cache[io.name] = Empty(shape, DType(io.dtype));
  }
  bool encdec = false;
  for (const IO& io : inputs) encdec = encdec || io.name == "decoder_input_ids";
  std::vector<int64_t> fed, generated;
  std::vector<float> all_logits;
  std::vector<int64_t> ids = prompt;
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  std::vector<int64_t> enc_pos(prompt_len), enc_mask(prompt_len, 1);
  for (int64_t i = 0; i < prompt_len; ++i) enc_pos[i] = i;
  if (encdec) {
    JObject meta = Obj(Get(manifest, "meta"));
    auto start = meta.find(ffi::String("decoder_start_token_id"));
    std::optional<int64_t> id = start == meta.end() ? std::nullopt : (*start).second.try_cast<int64_t>();
    ids = {id.value_or(0)};
  }
  for (int step = 0; step < steps; ++step) {
    int64_t past = static_cast<int64_t>(fed.size()), seq = static_cast<int64_t>(ids.size());
    std::vector<int64_t> pos(seq), mask(past + seq, 1);
    for (int64_t i = 0; i < seq; ++i) pos[i] = past + i;
    std::vector<ffi::Any> args;
    for (const IO& io : inputs) {
      if (io.name == "input_ids") args.push_back(encdec ? I64({1, prompt_len}, prompt) : I64({1, seq}, ids));
      else if (io.name == "decoder_input_ids") args.push_back(I64({1, seq}, ids));
      else if (io.name == "encoder_attention_mask") args.push_back(I64({1, prompt_len}, enc_mask));
      else if (io.name == "encoder_position_ids") args.push_back(I64({1, prompt_len}, enc_pos));
      else if (io.name == "position_ids") args.push_back(I64({1, seq}, pos));
      else if (io.name == "attention_mask") args.push_back(I64({1, past + seq}, mask));
      else if (io.name == "prefix_len") args.push_back(I64({1}, {static_cast<int64_t>(prompt.size())}));
      else if (io.name == "domain_ids") args.push_back(I64({1}, {domain}));
      else if (cache.count(io.name)) args.push_back(cache[io.name]);
      else Fail("runner cannot feed model input " + io.name);
    }
    for (const ffi::Tensor& w : weights) args.push_back(w);
    std::vector<ffi::AnyView> views(args.begin(), args.end());
    ffi::Any result;
    forward.CallPacked(views.data(), static_cast<int32_t>(views.size()), &result);
    JArray outs = result.cast<JArray>();
    fed.insert(fed.end(), ids.begin(), ids.end());
    ffi::Tensor logits;
    for (size_t i = 0; i < outputs.size(); ++i) {
      const std::string& name = outputs[i].name;
      if (name == "logits") logits = outs[i].cast<ffi::Tensor>();
      else if (name.rfind("present.", 0) == 0) cache["past_key_values." + name.substr(8)] = outs[i].cast<ffi::Tensor>();
    }
    int64_t vocab = logits.shape()[2];
    const float* rows = static_cast<const float*>(logits.data_ptr());
    all_logits.insert(all_logits.end(), rows, rows + seq * vocab);
    const float* last = rows + (seq - 1) * vocab;
    int64_t best = 0;
    for (int64_t v = 1; v < vocab; ++v) if (last[v] > last[best]) best = v;
    generated.push_back(best);
    ids = {best};
  }
  for (size_t i = 0; i < generated.size(); ++i) std::cout << (i ? " " : "") << generated[i];
  std::cout << std::endl;
  if (!logits_path.empty()) {
    std::ofstream f(logits_path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(all_logits.data()), all_logits.size() * sizeof(float));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "irgraph_runner: " << e.what() << std::endl;
    return 1;
  }
}
