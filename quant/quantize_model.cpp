#include "quant/quantize_model.h"

#include <chrono>
#include <algorithm>
#include <map>
#include <memory>
#include <random>

#include "core/error.h"
#include "models/llama.h"

namespace engine {

namespace {

// H += 2/N Σ_t x_t x_tᵀ for x [n][width]; rows of H split over threads.
void accumulate_hessian(std::vector<double>& H, const float* x, int64_t n, int64_t width, double weight,
                        ThreadPool& pool) {
  pool.parallel_for(width, 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      double* h = H.data() + i * width;
      for (int64_t t = 0; t < n; t++) {
        const float* xt = x + t * width;
        const double a = weight * xt[i];
        if (a == 0) continue;
        for (int64_t j = 0; j < width; j++) h[j] += a * xt[j];
      }
    }
  });
}

// A dense f32 copy of a linear layer (what the quantizer works on).
struct DenseLinear {
  std::vector<float> w;
  int64_t rows = 0, cols = 0;
  cpu::Linear view() const {
    cpu::Linear l;
    l.dense = cpu::WeightView{DType::F32, rows, cols, w.data(), (size_t)cols * sizeof(float)};
    return l;
  }
};

// Matrix `index` of tensor `name`: the tensor itself (index -1, a 2-D matrix) or one
// expert of a 3-D stack [cols, rows, n_expert].
DenseLinear dense_copy(const GGUFFile& f, const std::string& name, int64_t index = -1) {
  const GGUFTensorInfo& t = f.require_tensor(name);
  if (t.n_dims != (index < 0 ? 2u : 3u) || (index >= 0 && index >= t.ne[2]))
    f.fail("tensor '" + name + "' is not " + (index < 0 ? "a matrix" : "a stack of expert matrices"));
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16 && t.type != DType::Q8_0)
    f.fail("tensor '" + name + "' is " + dtype_name(t.type) + ": quantize needs a float (or Q8_0) model");
  DenseLinear d;
  d.cols = t.ne[0];
  d.rows = t.ne[1];
  d.w.resize((size_t)(d.rows * d.cols));
  const size_t rb = dtype_row_bytes(t.type, d.cols);
  const uint8_t* base = t.data + (size_t)(std::max<int64_t>(index, 0) * d.rows) * rb;
  for (int64_t r = 0; r < d.rows; r++) dequantize_row(t.type, base + r * rb, d.w.data() + r * d.cols, d.cols);
  return d;
}

// One linear layer to quantize: its SpQR base name, where the block reads it, and
// which expert's tokens feed it (-1: all tokens).
struct Member {
  std::string name;
  cpu::Linear* slot;
  int64_t expert;
  std::string tensor;  // the GGUF tensor holding it (3-D for experts)
};

// Layers quantized together from one pass over the calibration samples: the inputs
// at `tap`, with each earlier group already quantized.
struct Group {
  BlockTap tap;
  int64_t width;
  std::vector<Member> members;
};

std::vector<Group> block_groups(const LlamaHParams& hp, int64_t b, LlamaBlockWeights& bw) {
  const std::string pre = "blk." + std::to_string(b) + ".";
  auto m = [&](const char* n, cpu::Linear* slot) { return Member{pre + n, slot, -1, pre + n + ".weight"}; };
  std::vector<Group> g = {{BlockTap::AttnIn, hp.n_embd, {m("attn_q", &bw.wq), m("attn_k", &bw.wk), m("attn_v", &bw.wv)}},
                          {BlockTap::AttnOut, hp.q_dim(), {m("attn_output", &bw.wo)}}};
  if (!hp.moe()) {
    g.push_back({BlockTap::FfnIn, hp.n_embd, {m("ffn_gate", &bw.w_gate), m("ffn_up", &bw.w_up)}});
    g.push_back({BlockTap::FfnAct, hp.n_ff, {m("ffn_down", &bw.w_down)}});
    return g;
  }
  // Experts: each from the tokens routed to it. The router stays in its own type
  // (as llama.cpp's quantize keeps ffn_gate_inp): it is tiny and picks the experts.
  Group in{BlockTap::FfnIn, hp.n_embd, {}}, act{BlockTap::FfnAct, hp.n_ff, {}};
  for (int64_t e = 0; e < hp.n_expert; e++) {
    std::string es = ".";
    es += std::to_string(e);
    in.members.push_back({pre + "ffn_gate_exps" + es, &bw.exp_gate[e], e, pre + "ffn_gate_exps.weight"});
    in.members.push_back({pre + "ffn_up_exps" + es, &bw.exp_up[e], e, pre + "ffn_up_exps.weight"});
    act.members.push_back({pre + "ffn_down_exps" + es, &bw.exp_down[e], e, pre + "ffn_down_exps.weight"});
  }
  g.push_back(std::move(in));
  g.push_back(std::move(act));
  return g;
}

}  // namespace

// The type a table of `cols`-wide rows is stored in: `want` (its default or the one
// asked for), or `input` for "keep"; a default whose blocks do not divide the rows
// falls back (as llama.cpp's quantize falls back): the Q6_K head to Q8_0 (32-value
// blocks), anything else to the input's type. An explicit request fails.
static DType table_type(const GGUFFile& f, const char* name, const char* flag, int64_t cols, DType input, DType want,
                        bool keep, bool given) {
  if (keep || want == input || cols % dtype_block_size(want) == 0) return keep ? input : want;
  if (!given) return want == DType::Q6_K && cols % kQ8Block == 0 ? DType::Q8_0 : input;
  f.fail(std::string(name) + " has rows of " + std::to_string(cols) + " values, not a multiple of " +
         std::to_string(dtype_block_size(want)) + " as " + dtype_name(want) + " needs (use " + flag + " keep)");
}

EmbdPlan plan_embedding(const GGUFFile& f, const QuantizeModelOptions& opt) {
  EmbdPlan p;
  const GGUFTensorInfo* te = f.find_tensor("token_embd.weight");
  const GGUFTensorInfo* to = f.find_tensor("output.weight");
  const GGUFTensorInfo* head_src = to ? to : te;  // tied: the head reads the embedding
  if (head_src)
    p.head_type = table_type(f, to ? "output.weight" : "token_embd.weight", "--head-type", head_src->ne[0],
                             head_src->type, opt.head_type, opt.keep_head, opt.head_type_given);
  if (!te) return p;
  // Tied: one table serves both roles; unless the embedding type was asked for, it
  // takes the head's type (a second, separate head would cost more than it saves).
  if (!to && !opt.embd_type_given && !opt.keep_embd) p.type = p.head_type;
  else
    p.type = table_type(f, "token_embd.weight", "--embd-type", te->ne[0], te->type, opt.embd_type, opt.keep_embd,
                        opt.embd_type_given);
  p.explicit_head = !to && p.type != p.head_type;
  return p;
}

QuantizeModelReport quantize_model(const std::string& in, const std::string& out,
                                   const std::vector<int32_t>& calib_tokens, const QuantizeModelOptions& opt,
                                   ThreadPool& pool, const std::function<void(int, int, const LayerReport&)>& progress) {
  auto t_start = std::chrono::steady_clock::now();
  std::shared_ptr<const GGUFFile> file(GGUFFile::open(in));
  const GGUFFile& f = *file;
  if (f.has(kSpqrVersionKey)) f.fail("is already quantized with SpQR");
  auto model = LlamaModel::load(file, {0, -1, true, false});
  const LlamaHParams& hp = model->hparams();
  opt.cfg.p.validate();
  const EmbdPlan embd = plan_embedding(f, opt);
  if (opt.nsamples < 1 || opt.seqlen < 2) throw Error("--nsamples must be >= 1 and --seqlen >= 2");
  if ((int64_t)calib_tokens.size() < opt.seqlen + 1)
    throw Error("the calibration text has " + std::to_string(calib_tokens.size()) + " tokens; --seqlen " +
                std::to_string(opt.seqlen) + " needs at least " + std::to_string(opt.seqlen + 1));

  // Calibration sequences: random windows of the text, as GPTQ samples them, each
  // starting with BOS as every sequence does at inference (position 0 of a Llama is
  // an attention sink whose activations differ from those of ordinary tokens).
  std::mt19937_64 rng(opt.seed);
  const int64_t S = opt.seqlen, d = hp.n_embd, N = opt.nsamples;
  std::uniform_int_distribution<int64_t> start(0, (int64_t)calib_tokens.size() - S);
  std::vector<float> X((size_t)(N * S * d));  // the current block's inputs, sample after sample
  for (int64_t s = 0; s < N; s++) {
    const int64_t at = start(rng);
    std::vector<int32_t> seq(calib_tokens.begin() + at, calib_tokens.begin() + at + S);
    if (opt.bos >= 0) seq[0] = opt.bos;
    model->embed(seq.data(), S, X.data() + s * S * d);
  }

  GGUFWriter w(f.alignment());
  w.copy_metadata(f);
  spqr_write_params(w, opt.cfg.p, quant_method_name(opt.cfg.method));
  w.set_f32("spqr.outlier_threshold", opt.cfg.outlier_threshold);
  // The search runs only for SpQR with bilevel statistics (quant/gptq.cpp); record what ran.
  const bool searched = opt.cfg.method == QuantMethod::SpQR && opt.cfg.p.stat_bits != 16;
  w.set_u32("spqr.stat_search", searched ? (uint32_t)opt.cfg.stat_search : 0u);
  w.set_string("spqr.permutation", opt.cfg.act_order ? "act-order" : "identity");
  w.set_u32("spqr.calibration_samples", (uint32_t)N);
  w.set_u32("spqr.calibration_seqlen", (uint32_t)S);

  QuantizeModelReport rep;
  std::vector<std::unique_ptr<SpqrLayer>> layers;  // kept alive until the write
  std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;
  const int total = (int)(hp.n_layer * (hp.moe() ? 4 + 3 * hp.n_expert : 7));
  int done = 0;

  for (int64_t b = 0; b < hp.n_layer; b++) {
    LlamaBlockWeights bw = model->block(b);  // norms (and router) from the file; linears replaced as quantized
    std::vector<Group> groups = block_groups(hp, b, bw);
    std::map<std::string, DenseLinear> dense;
    for (const Group& g : groups)
      for (const Member& mb : g.members) {
        dense[mb.name] = dense_copy(f, mb.tensor, mb.expert);
        *mb.slot = dense[mb.name].view();
      }
    for (const Group& g : groups) {
      // Run the block on every sample (earlier groups already quantized) and gather this
      // group's Hessians: one per expert in a mixture, else one.
      std::map<int64_t, std::vector<double>> H;
      for (const Member& mb : g.members) H[mb.expert].assign((size_t)(g.width * g.width), 0.0);
      const double scale = 2.0 / (double)(N * S);
      for (int64_t s = 0; s < N; s++) {
        std::vector<float> x(X.begin() + s * S * d, X.begin() + (s + 1) * S * d);
        KVCache cache(hp, b, b + 1, S, DType::F32);
        llama_block_forward(hp, bw, cache, b, x.data(), S, pool,
                            [&](BlockTap t, int64_t e, const float* v, int64_t n, int64_t wd) {
                              auto it = H.find(e);
                              if (t == g.tap && it != H.end()) accumulate_hessian(it->second, v, n, wd, scale, pool);
                            });
      }
      // An expert no calibration token chose has no Hessian: quantize it as if its
      // inputs were white (GPTQ would otherwise zero its dead columns, i.e. all of them).
      for (auto& [e, h] : H)
        if (std::all_of(h.begin(), h.end(), [](double v) { return v == 0; }))
          for (int64_t i = 0; i < g.width; i++) h[(size_t)(i * g.width + i)] = 1;
      for (const Member& mb : g.members) {
        DenseLinear& dl = dense[mb.name];
        LayerReport lr;
        lr.name = mb.name;
        layers.push_back(
            std::make_unique<SpqrLayer>(quantize_layer(dl.w, dl.rows, dl.cols, H[mb.expert], opt.cfg, pool, &lr)));
        // Later groups see this layer quantized: dl.w now holds its dequantized weights.
        *mb.slot = dl.view();
        rep.layers.push_back(lr);
        if (progress) progress(++done, total, lr);
      }
    }
    // Inputs of the next block: this block, fully quantized, applied to every sample.
    for (int64_t s = 0; s < N; s++) {
      KVCache cache(hp, b, b + 1, S, DType::F32);
      llama_block_forward(hp, bw, cache, b, X.data() + s * S * d, S, pool);
    }
  }

  // Tensors in the input's order: quantized linears as SpQR, the rest as they were
  // (the head and the embedding in the types asked for, by default Q6_K and Q4_0).
  double total_bits = 0, total_params = 0;
  std::map<std::string, const SpqrLayer*> by_name;
  for (size_t i = 0; i < layers.size(); i++) by_name[rep.layers[i].name] = layers[i].get();
  bool wrote_head = false;
  for (auto& t : f.tensors()) {
    const std::string& name = t.name;
    const std::string base = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0
                                 ? name.substr(0, name.size() - 7) : "";
    if (t.n_dims == 3 && by_name.count(base + ".0")) {
      // A stack of experts: one SpQR layer per expert, "<base>.<e>" (docs/spqr-format.md).
      for (int64_t e = 0; e < t.ne[2]; e++) {
        const std::string eb = base + "." + std::to_string(e);
        auto ei = by_name.find(eb);
        if (ei == by_name.end()) throw Error("internal: expert layer '" + eb + "' was not quantized");
        ei->second->add_to(w, eb);
        total_bits += ei->second->bits_per_param() * (double)(t.ne[0] * t.ne[1]);
      }
      total_params += (double)t.n_elements();
      rep.quantized_params += t.n_elements();
      continue;
    }
    auto it = by_name.find(base);
    if (it != by_name.end()) {
      it->second->add_to(w, base);
      total_bits += it->second->bits_per_param() * (double)t.n_elements();
      total_params += (double)t.n_elements();
      rep.quantized_params += t.n_elements();
      continue;
    }
    const bool is_head = name == "output.weight", is_embd = name == "token_embd.weight";
    DType type = is_head ? embd.head_type : is_embd ? embd.type : t.type;  // block sizes checked by the plan
    wrote_head |= is_head;
    if (type != t.type) {
      auto buf = std::make_shared<std::vector<uint8_t>>(
          convert_rows(t.type, t.data, type, t.ne[0], t.n_elements() / t.ne[0]));
      owned.push_back(buf);
      w.add_tensor(name, type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), buf->data(), buf->size());
      total_bits += 8.0 * (double)buf->size();
    } else {
      w.add_tensor(name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
      total_bits += 8.0 * (double)t.nbytes;
    }
    total_params += (double)t.n_elements();
  }
  // A tied model gets an explicit head when its embedding is stored in a type the
  // head's matmul cannot use, or in another type than the head asked for.
  if (!wrote_head && embd.explicit_head) {
    const GGUFTensorInfo& te = f.require_tensor("token_embd.weight");
    const int64_t cols = te.ne[0], rows = te.ne[1];
    const DType ht = embd.head_type;
    auto buf = std::make_shared<std::vector<uint8_t>>(convert_rows(te.type, te.data, ht, cols, rows));
    owned.push_back(buf);
    w.add_tensor("output.weight", ht, {cols, rows}, buf->data(), buf->size());
    total_bits += 8.0 * (double)buf->size();
    total_params += (double)(cols * rows);
  }
  w.write(out);

  int64_t outl = 0;
  for (auto& l : layers) outl += l->n_outliers;
  double qbits = 0;
  for (size_t i = 0; i < layers.size(); i++) qbits += layers[i]->bits_per_param() * (double)(rep.layers[i].rows * rep.layers[i].cols);
  rep.avg_bits = rep.quantized_params ? qbits / (double)rep.quantized_params : 0;
  rep.model_bits = total_params > 0 ? total_bits / total_params : 0;
  rep.outlier_share = rep.quantized_params ? (double)outl / (double)rep.quantized_params : 0;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return rep;
}

}  // namespace engine
