// streamer_runner: streams a 16-kHz WAV file through a streamer ExecuTorch program (.pte + .json
// sidecar) chunk by chunk, greedy-decodes with committed / tentative text, prints partials and the
// final text.
//
//   examples/cpp/build.sh
//   streamer export -o /tmp/demo.pte --streaming cached --chunk 0.32 --quantize dynamic
//   examples/cpp/build/streamer_runner /tmp/demo.pte examples/hello.wav [--threads 1] [--passes 1] [--quiet]
//
// stdout: the final text (one line). stderr: one line per step whose text changed,
// "partial: <committed> | <tentative>", and a timing summary. See model.md for the program's
// inputs and outputs. Before decoding, a sidecar with a self_check makes the runner stream a fixed
// signal through the program and compare its logits with the exporter's (streamer.export.selfcheck):
// where this CPU's kernels compute wrong results it prints one error line and exits with status 3
// instead of printing garbage.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

// The wheel ships libexecutorch_threadpool.so but not its header: declare the two entry points used.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::TensorPtr;
using executorch::extension::make_tensor_ptr;
using executorch::runtime::EValue;

namespace {

constexpr int kSampleRate = 16000;
constexpr double kNormEps = 1e-7;         // streamer.preprocess.NORM_EPS
constexpr int kCommitBlankFrames = 25;    // streamer.decoding.greedy: a 0.5-s blank run ends a word

[[noreturn]] void fail(const std::string& msg) { throw std::runtime_error(msg); }

// ------------------------------------------------------------------------------------------ JSON
// A small JSON reader: enough for the sidecar (objects, arrays, strings, numbers, bools, null).
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  const Json& operator[](const std::string& key) const {
    auto it = obj.find(key);
    if (kind != Object || it == obj.end()) fail("sidecar: expected a field '" + key + "', found none");
    return it->second;
  }
  bool has(const std::string& key) const { return kind == Object && obj.count(key) > 0; }
};

class JsonParser {
 public:
  explicit JsonParser(const std::string& text) : s_(text) {}
  Json parse() {
    Json v = value();
    skip();
    if (i_ != s_.size()) error("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void error(const std::string& what) { fail("sidecar JSON: " + what + " at byte " + std::to_string(i_)); }
  void skip() { while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_; }
  char peek() { skip(); if (i_ >= s_.size()) error("unexpected end"); return s_[i_]; }
  void expect(char c) { if (peek() != c) error(std::string("expected '") + c + "'"); ++i_; }

  Json value() {
    char c = peek();
    Json v;
    if (c == '{') {
      v.kind = Json::Object; ++i_;
      if (peek() == '}') { ++i_; return v; }
      while (true) {
        std::string key = string();
        expect(':');
        v.obj[key] = value();
        if (peek() == ',') { ++i_; continue; }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.kind = Json::Array; ++i_;
      if (peek() == ']') { ++i_; return v; }
      while (true) {
        v.arr.push_back(value());
        if (peek() == ',') { ++i_; continue; }
        expect(']');
        return v;
      }
    }
    if (c == '"') { v.kind = Json::String; v.str = string(); return v; }
    if (s_.compare(i_, 4, "true") == 0) { v.kind = Json::Bool; v.b = true; i_ += 4; return v; }
    if (s_.compare(i_, 5, "false") == 0) { v.kind = Json::Bool; i_ += 5; return v; }
    if (s_.compare(i_, 4, "null") == 0) { i_ += 4; return v; }
    size_t end = i_;
    while (end < s_.size() && std::strchr("+-0123456789.eE", s_[end])) ++end;
    if (end == i_) error("unexpected character");
    v.kind = Json::Number;
    v.num = std::stod(s_.substr(i_, end - i_));
    i_ = end;
    return v;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) error("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          unsigned cp = std::stoul(s_.substr(i_, 4), nullptr, 16);
          i_ += 4;
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {  // surrogate pair
            unsigned lo = std::stoul(s_.substr(i_ + 2, 4), nullptr, 16);
            i_ += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          if (cp < 0x80) out += static_cast<char>(cp);
          else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
          else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
          } else {
            out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F));
          }
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
  }
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ------------------------------------------------------------------------------------------ WAV
// 16-kHz mono (or first channel) PCM 16-bit or IEEE float 32-bit → float samples in [-1, 1].
std::vector<float> read_wav(const std::string& path) {
  std::string d = read_file(path);
  if (d.size() < 12 || d.compare(0, 4, "RIFF") != 0 || d.compare(8, 4, "WAVE") != 0)
    fail("wav: expected a RIFF/WAVE file, found something else in " + path);
  auto u16 = [&](size_t o) { return static_cast<uint16_t>(static_cast<uint8_t>(d[o]) | (static_cast<uint8_t>(d[o + 1]) << 8)); };
  auto u32 = [&](size_t o) { return static_cast<uint32_t>(u16(o)) | (static_cast<uint32_t>(u16(o + 2)) << 16); };
  uint16_t format = 0, channels = 0, bits = 0;
  uint32_t rate = 0;
  size_t pos = 12;
  while (pos + 8 <= d.size()) {
    std::string id = d.substr(pos, 4);
    uint32_t size = u32(pos + 4);
    size_t body = pos + 8;
    if (id == "fmt ") {
      format = u16(body); channels = u16(body + 2); rate = u32(body + 4); bits = u16(body + 14);
      if (format == 0xFFFE && size >= 26) format = u16(body + 24);  // WAVE_FORMAT_EXTENSIBLE
    } else if (id == "data") {
      if (rate != kSampleRate) fail("wav: expected 16000 Hz, found " + std::to_string(rate) + " Hz (resample first)");
      if (channels < 1) fail("wav: no channels");
      size_t n_bytes = std::min<size_t>(size, d.size() - body);
      std::vector<float> out;
      if (format == 1 && bits == 16) {
        size_t frames = n_bytes / (2 * channels);
        out.resize(frames);
        for (size_t i = 0; i < frames; ++i) out[i] = static_cast<int16_t>(u16(body + 2 * channels * i)) / 32768.0f;
      } else if (format == 3 && bits == 32) {
        size_t frames = n_bytes / (4 * channels);
        out.resize(frames);
        for (size_t i = 0; i < frames; ++i) std::memcpy(&out[i], d.data() + body + 4 * channels * i, 4);
      } else {
        fail("wav: expected 16-bit PCM or 32-bit float, found format " + std::to_string(format) + ", " +
             std::to_string(bits) + " bits");
      }
      return out;
    }
    pos = body + size + (size & 1);
  }
  fail("wav: no data chunk in " + path);
}

// ------------------------------------------------------------------------------------------ decoding
// Greedy CTC with streamer's commit rule (streamer.decoding.greedy.GreedyDecoder): a word is committed
// when the best path emits the delimiter after it or after 25 blank frames; the word in progress is
// tentative. Words are the token texts joined, lower-cased, special tokens dropped.
class GreedyDecoder {
 public:
  GreedyDecoder(std::vector<std::string> texts, int blank, std::vector<bool> delimiter)
      : texts_(std::move(texts)), blank_(blank), delimiter_(std::move(delimiter)) {}

  void advance(int tok) {
    if (tok == blank_) {
      if (++blank_run_ == kCommitBlankFrames) end_word();
    } else if (tok != last_) {
      if (delimiter_[tok]) end_word();
      else word_ += texts_[tok];
      blank_run_ = 0;
    }
    last_ = tok;
  }
  std::string committed() const { return join(words_); }
  std::string tentative() const { return clean(word_); }
  std::string final_text() const {
    std::vector<std::string> all = words_;
    if (!clean(word_).empty()) all.push_back(clean(word_));
    return join(all);
  }

 private:
  std::vector<std::string> texts_;
  int blank_;
  std::vector<bool> delimiter_;
  int last_ = -1, blank_run_ = 0;
  std::string word_;
  std::vector<std::string> words_;

  void end_word() {
    std::string w = clean(word_);
    if (!w.empty()) words_.push_back(w);
    word_.clear();
  }
  static std::string clean(const std::string& s) {  // collapse whitespace (vocab.ids_to_text)
    std::istringstream in(s);
    std::string part, out;
    while (in >> part) out += (out.empty() ? "" : " ") + part;
    return out;
  }
  static std::string join(const std::vector<std::string>& w) {
    std::string out;
    for (const auto& s : w) out += (out.empty() ? "" : " ") + s;
    return out;
  }
};

std::string lower_ascii(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ------------------------------------------------------------------------------------------ state
struct Slot {  // one state tensor of the sidecar's layout
  std::vector<int32_t> sizes;
  ScalarType type;
  size_t nbytes = 0;
  bool from_output = true;  // its next value: the step's state output `source`, or state tensor `source`
  size_t source = 0;
};

ScalarType dtype_of(const std::string& name) {
  if (name == "float32") return ScalarType::Float;
  if (name == "int64") return ScalarType::Long;
  if (name == "bool") return ScalarType::Bool;
  fail("sidecar: unsupported state dtype " + name);
}

size_t element_size(ScalarType t) { return t == ScalarType::Float ? 4 : t == ScalarType::Long ? 8 : 1; }

// Peak resident set size of this process in MB (Linux: VmHWM of /proc/self/status), or -1 elsewhere.
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1.0;
}

// Running input normalization (streamer.preprocess.normalize_running): Chan's update of the mean and
// variance with each piece, then the piece normalized with the statistics so far.
struct RunningNorm {
  int64_t count = 0;
  double mean = 0, m2 = 0;

  void apply(float* piece, size_t real) {
    double mx = 0, m2x = 0;
    for (size_t i = 0; i < real; ++i) mx += piece[i];
    mx /= static_cast<double>(real);
    for (size_t i = 0; i < real; ++i) m2x += (piece[i] - mx) * (piece[i] - mx);
    int64_t total = count + static_cast<int64_t>(real);
    double delta = mx - mean;
    mean += delta * static_cast<double>(real) / total;
    m2 += m2x + delta * delta * static_cast<double>(count) * static_cast<double>(real) / total;
    count = total;
    double scale = 1.0 / std::sqrt(m2 / count + kNormEps);
    for (size_t i = 0; i < real; ++i) piece[i] = static_cast<float>((piece[i] - mean) * scale);
  }
};

using State = std::vector<std::vector<uint8_t>>;

// The next state (streamer.export.executorch.advance_state): state tensors moved along their ring
// (no copy), step outputs copied out of the method's memory (the next call reuses it) into buffers
// with `padding` spare bytes after the data (format version 3 programs read their inputs in place).
State next_state(const std::vector<Slot>& layout, State& state, const std::vector<EValue>& out, size_t padding) {
  State next(layout.size());
  for (size_t i = 0; i < layout.size(); ++i)
    if (!layout[i].from_output) next[i] = std::move(state[layout[i].source]);
  for (size_t i = 0; i < layout.size(); ++i) {
    if (!layout[i].from_output) continue;
    if (2 + layout[i].source >= out.size()) fail("program: fewer state outputs than the sidecar names");
    const auto& s = out[2 + layout[i].source].toTensor();
    if (static_cast<size_t>(s.nbytes()) != layout[i].nbytes) fail("program: state output size differs from the sidecar");
    const auto* p = static_cast<const uint8_t*>(s.const_data_ptr());
    next[i].resize(layout[i].nbytes + padding);
    std::copy(p, p + s.nbytes(), next[i].begin());
  }
  return next;
}

// The self-check signal of streamer.export.selfcheck (buzz-v1): the same formula, in double.
std::vector<float> test_signal(size_t n) {
  const double pi = 3.14159265358979323846;
  std::vector<float> x(n);
  double acc = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i);
    acc += 110.0 + 60.0 * std::sin(2 * pi * 0.7 * t / kSampleRate);
    const double phase = 2 * pi * acc / kSampleRate;
    double buzz = 0;
    for (int k = 1; k < 30; ++k) buzz += std::sin(k * phase) / k;
    x[i] = static_cast<float>(0.1 * (0.5 + 0.5 * std::sin(2 * pi * 2.5 * t / kSampleRate)) * buzz);
  }
  return x;
}

int64_t constant(Module& m, const char* name) {
  auto r = m.get(name);
  if (!r.ok()) fail(std::string("program: expected a constant method '") + name + "', found none");
  return r->toInt();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> pos;
    int threads = 0, passes = 1;
    bool quiet = false;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
      else if (a == "--quiet") quiet = true;
      else if (a == "--passes" && i + 1 < argc) passes = std::max(1, std::stoi(argv[++i]));
      else pos.push_back(a);
    }
    if (pos.size() != 2) {
      std::fprintf(stderr, "usage: %s PROGRAM.pte AUDIO.wav [--threads N] [--passes N] [--quiet]\n", argv[0]);
      return 2;
    }
    const std::string pte = pos[0];
    std::string sidecar_path = pte.substr(0, pte.rfind('.')) + ".json";
    Json side = JsonParser(read_file(sidecar_path)).parse();
    if (side["format"].str != "streamer-pte") fail("sidecar: expected format 'streamer-pte', found '" + side["format"].str + "'");

    // Vocabulary: token texts as streamer.vocab.Vocabulary.token_text writes them.
    const Json& voc = side["vocabulary"];
    std::vector<std::string> tokens;
    for (const auto& t : voc["tokens"].arr) tokens.push_back(t.str);
    int blank = static_cast<int>(voc["blank_id"].num);
    std::string delim = voc.has("word_delimiter") && voc["word_delimiter"].kind == Json::String ? voc["word_delimiter"].str : "";
    std::vector<bool> special(tokens.size(), false), is_delim(tokens.size(), false);
    if (voc.has("special_ids")) for (const auto& s : voc["special_ids"].arr) special[static_cast<size_t>(s.num)] = true;
    bool lowercase = voc.has("lowercase") ? voc["lowercase"].b : false;
    std::vector<std::string> texts(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (special[i]) continue;
      texts[i] = (!delim.empty() && tokens[i] == delim) ? " " : (lowercase ? tokens[i] : lower_ascii(tokens[i]));
      is_delim[i] = texts[i] == " ";
    }
    bool normalize = side["preprocess"]["normalize"].b;

    if (threads > 0) executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);
    auto t0 = std::chrono::steady_clock::now();
    Module module(pte, Module::LoadMode::Mmap);
    if (module.load_method("forward") != executorch::runtime::Error::Ok) fail("program: cannot load method 'forward' of " + pte);
    const int64_t chunk = constant(module, "chunk_samples");
    if (constant(module, "sample_rate") != kSampleRate) fail("program: expected a 16000-Hz program");
    if (constant(module, "vocab_size") != static_cast<int64_t>(tokens.size())) fail("program and sidecar disagree on the vocabulary size");
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // State layout from the sidecar; the state starts as zeros, one byte buffer per slot, owned here.
    std::vector<Slot> layout;
    for (const auto& f : side["state"].arr) {
      Slot slot;
      size_t n = 1;
      for (const auto& s : f["shape"].arr) { slot.sizes.push_back(static_cast<int32_t>(s.num)); n *= static_cast<size_t>(s.num); }
      slot.type = dtype_of(f["dtype"].str);
      slot.nbytes = n * element_size(slot.type);
      slot.source = layout.size();  // format version 1: output i is state i
      if (f.has("next")) {  // version 2: an output, or another state tensor moved along a ring
        slot.from_output = f["next"].has("output");
        slot.source = static_cast<size_t>(f["next"][slot.from_output ? "output" : "state"].num);
      }
      layout.push_back(std::move(slot));
    }
    for (const auto& slot : layout)
      if (!slot.from_output && (slot.source >= layout.size() || layout[slot.source].nbytes != slot.nbytes))
        fail("sidecar: a state entry moves from a state tensor that does not exist or differs in size");

    // Format version 3: the program reads its inputs in place, and XNNPACK may read a little past
    // their end, so every input buffer keeps this many spare bytes after its data.
    const size_t padding = side.has("input_padding_bytes") ? static_cast<size_t>(side["input_padding_bytes"].num) : 0;
    std::vector<float> piece(static_cast<size_t>(chunk) + (padding + sizeof(float) - 1) / sizeof(float));
    std::vector<int64_t> num(1 + (padding + sizeof(int64_t) - 1) / sizeof(int64_t));
    // One step: `real` samples of `piece` (the rest zero) with `state`; calls row(logits of a valid frame).
    auto run_step = [&](size_t real, State& state, const std::function<void(const float*, int64_t)>& row) {
      num[0] = static_cast<int64_t>(real);
      std::vector<TensorPtr> keep;
      keep.push_back(make_tensor_ptr({1, static_cast<int32_t>(chunk)}, piece.data(), ScalarType::Float));
      keep.push_back(make_tensor_ptr({1}, num.data(), ScalarType::Long));
      for (size_t i = 0; i < layout.size(); ++i) keep.push_back(make_tensor_ptr(layout[i].sizes, state[i].data(), layout[i].type));
      std::vector<EValue> inputs(keep.begin(), keep.end());
      auto out = module.forward(inputs);
      if (!out.ok()) fail("program: forward failed with error " + std::to_string(static_cast<int>(out.error())));
      const auto& logits = (*out)[0].toTensor();
      const auto& valid = (*out)[1].toTensor();
      const int64_t frames = logits.size(1), vocab = logits.size(2);
      const float* lp = logits.const_data_ptr<float>();
      const bool* vp = valid.const_data_ptr<bool>();
      for (int64_t f = 0; f < frames; ++f)
        if (vp[f]) row(lp + f * vocab, vocab);
      state = next_state(layout, state, *out, padding);
    };
    auto fresh_state = [&]() {
      State state;
      for (const auto& slot : layout) state.emplace_back(slot.nbytes + padding, 0);
      return state;
    };

    // Self-check (streamer.export.selfcheck): this CPU's logits of a fixed signal against the
    // exporter's. A kernel path that computes wrong results prints confident garbage; refuse instead.
    if (side.has("self_check")) {
      const Json& check = side["self_check"];
      if (check["signal"].str != "buzz-v1") fail("sidecar: unknown self-check signal '" + check["signal"].str + "'");
      const size_t chunks = static_cast<size_t>(check["chunks"].num);
      std::vector<float> sig = test_signal(chunks * static_cast<size_t>(chunk));
      State state = fresh_state();
      double dot = 0, mine = 0, theirs = 0;
      size_t at_row = 0;
      const auto& ref = check["logits"].arr;
      bool shape_ok = true;
      for (size_t c = 0; c < chunks; ++c) {
        std::fill(piece.begin(), piece.end(), 0.0f);
        std::copy(sig.begin() + c * chunk, sig.begin() + (c + 1) * chunk, piece.begin());
        run_step(static_cast<size_t>(chunk), state, [&](const float* row, int64_t vocab) {
          if (at_row >= ref.size() || ref[at_row].arr.size() != static_cast<size_t>(vocab)) { shape_ok = false; return; }
          for (int64_t v = 0; v < vocab; ++v) {
            const double a = row[v], b = ref[at_row].arr[static_cast<size_t>(v)].num;
            dot += a * b; mine += a * a; theirs += b * b;
          }
          ++at_row;
        });
      }
      const double cosine = (shape_ok && at_row == ref.size()) ? dot / std::max(std::sqrt(mine * theirs), 1e-30) : 0.0;
      if (cosine < check["min_cosine"].num) {
        char msg[400];
        std::snprintf(msg, sizeof msg, "self-check failed on this CPU (cosine %.3f to the exporter's logits, expected >= %.2f): "
                      "its kernels compute wrong results here, and the text would be garbage", cosine, check["min_cosine"].num);
        std::fprintf(stderr, "error: %s\n", msg);
        return 3;
      }
      if (!quiet) std::fprintf(stderr, "self-check: cosine %.4f to the exporter's logits\n", cosine);
    }

    std::vector<float> audio = read_wav(pos[1]);
    double best_s = -1;
    std::string text;
    for (int pass = 0; pass < passes; ++pass) {  // each pass a fresh stream; the fastest is reported
      State state = fresh_state();
      GreedyDecoder decoder(texts, blank, is_delim);
      RunningNorm norm;
      double compute_s = 0;
      std::string shown;
      for (size_t at = 0; at < audio.size(); at += static_cast<size_t>(chunk)) {
        size_t real = std::min(static_cast<size_t>(chunk), audio.size() - at);
        std::fill(piece.begin(), piece.end(), 0.0f);
        std::copy(audio.begin() + at, audio.begin() + at + real, piece.begin());
        if (normalize) norm.apply(piece.data(), real);
        auto t = std::chrono::steady_clock::now();
        run_step(real, state, [&](const float* row, int64_t vocab) {
          int best = 0;
          for (int64_t v = 1; v < vocab; ++v) if (row[v] > row[best]) best = static_cast<int>(v);
          decoder.advance(best);
        });
        compute_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();  // step + decode
        std::string line = decoder.committed() + " | " + decoder.tentative();
        if (!quiet && pass == 0 && line != shown) std::fprintf(stderr, "partial: %s\n", line.c_str());
        shown = line;
      }
      text = decoder.final_text();
      if (best_s < 0 || compute_s < best_s) best_s = compute_s;
    }
    std::printf("%s\n", text.c_str());
    double audio_s = static_cast<double>(audio.size()) / kSampleRate;
    std::fprintf(stderr, "%.2f s of audio, %.3f s compute (RTF %.3f), load %.2f s, peak RSS %.0f MB\n", audio_s,
                 best_s, audio_s > 0 ? best_s / audio_s : 0.0, load_s, peak_rss_mb());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
