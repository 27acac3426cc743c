#include "quant/quantize_model.h"

#include <chrono>
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

DenseLinear dense_copy(const GGUFFile& f, const std::string& name) {
  const GGUFTensorInfo& t = f.require_tensor(name);
  if (t.n_dims != 2) f.fail("tensor '" + name + "' is not a matrix");
  if (t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16 && t.type != DType::Q8_0)
    f.fail("tensor '" + name + "' is " + dtype_name(t.type) + ": quantize needs a float (or Q8_0) model");
  DenseLinear d;
  d.cols = t.ne[0];
  d.rows = t.ne[1];
  d.w.resize((size_t)(d.rows * d.cols));
  const size_t rb = dtype_row_bytes(t.type, d.cols);
  for (int64_t r = 0; r < d.rows; r++) dequantize_row(t.type, t.data + r * rb, d.w.data() + r * d.cols, d.cols);
  return d;
}

}  // namespace

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
  const int total = (int)hp.n_layer * 7;
  int done = 0;
  // Linear layers of a block in the order they are quantized, with the tap that feeds each group.
  struct Group {
    BlockTap tap;
    std::vector<const char*> names;
  };
  const Group groups[] = {{BlockTap::AttnIn, {"attn_q", "attn_k", "attn_v"}},
                          {BlockTap::AttnOut, {"attn_output"}},
                          {BlockTap::FfnIn, {"ffn_gate", "ffn_up"}},
                          {BlockTap::FfnAct, {"ffn_down"}}};

  for (int64_t b = 0; b < hp.n_layer; b++) {
    const std::string pre = "blk." + std::to_string(b) + ".";
    LlamaBlockWeights bw = model->block(b);  // norms from the file; linears replaced as they are quantized
    std::map<std::string, DenseLinear> dense;
    const char* all[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    cpu::Linear* slots[] = {&bw.wq, &bw.wk, &bw.wv, &bw.wo, &bw.w_gate, &bw.w_up, &bw.w_down};
    for (int i = 0; i < 7; i++) {
      dense[all[i]] = dense_copy(f, pre + all[i] + ".weight");
      *slots[i] = dense[all[i]].view();
    }
    auto slot_of = [&](const std::string& name) {
      for (int i = 0; i < 7; i++)
        if (name == all[i]) return slots[i];
      return slots[0];
    };
    for (const Group& g : groups) {
      // Run the block on every sample (earlier groups already quantized) and gather this group's Hessian.
      const int64_t width = g.tap == BlockTap::AttnOut ? hp.q_dim() : g.tap == BlockTap::FfnAct ? hp.n_ff : d;
      std::vector<double> H((size_t)(width * width), 0.0);
      const double scale = 2.0 / (double)(N * S);
      for (int64_t s = 0; s < N; s++) {
        std::vector<float> x(X.begin() + s * S * d, X.begin() + (s + 1) * S * d);
        KVCache cache(hp, b, b + 1, S, DType::F32);
        llama_block_forward(hp, bw, cache, b, x.data(), S, pool,
                            [&](BlockTap t, const float* v, int64_t n, int64_t wd) {
                              if (t == g.tap) accumulate_hessian(H, v, n, wd, scale, pool);
                            });
      }
      for (const char* name : g.names) {
        DenseLinear& dl = dense[name];
        LayerReport lr;
        lr.name = pre + name;
        layers.push_back(std::make_unique<SpqrLayer>(quantize_layer(dl.w, dl.rows, dl.cols, H, opt.cfg, pool, &lr)));
        // Later groups see this layer quantized: dl.w now holds its dequantized weights.
        *slot_of(name) = dl.view();
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
  // (or the head converted with --head-type).
  double total_bits = 0, total_params = 0;
  std::map<std::string, const SpqrLayer*> by_name;
  for (size_t i = 0; i < layers.size(); i++) by_name[rep.layers[i].name] = layers[i].get();
  bool wrote_head = false;
  for (auto& t : f.tensors()) {
    const std::string& name = t.name;
    const std::string base = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0
                                 ? name.substr(0, name.size() - 7) : "";
    auto it = by_name.find(base);
    if (it != by_name.end()) {
      it->second->add_to(w, base);
      total_bits += it->second->bits_per_param() * (double)t.n_elements();
      total_params += (double)t.n_elements();
      rep.quantized_params += t.n_elements();
      continue;
    }
    DType type = t.type;
    if (name == "output.weight" && opt.head_type_given) type = opt.head_type;
    wrote_head |= name == "output.weight";
    if (type != t.type && t.ne[0] % dtype_block_size(type) == 0) {
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
  // A tied model gets an explicit head when a head type is asked for.
  if (!wrote_head && opt.head_type_given) {
    const GGUFTensorInfo& te = f.require_tensor("token_embd.weight");
    const int64_t cols = te.ne[0], rows = te.ne[1];
    auto buf = std::make_shared<std::vector<uint8_t>>(convert_rows(te.type, te.data, opt.head_type, cols, rows));
    owned.push_back(buf);
    w.add_tensor("output.weight", opt.head_type, {cols, rows}, buf->data(), buf->size());
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
