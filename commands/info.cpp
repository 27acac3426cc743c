// engine info: what a GGUF file holds — architecture, hyper-parameters, metadata, tensors.
#include <cstdio>
#include <map>

#include "core/cli.h"
#include "core/gguf.h"
#include "core/spqr.h"
#include "models/llama.h"
#include "models/vocab.h"

using namespace engine;

static std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += (char)c;
    else if (c == '\n') o += "\\n";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += (char)c;
  }
  return o;
}

static int cmd_info(int argc, char** argv) {
  std::string model;
  bool json = false, all_meta = false;
  ArgParser p("info", "Print a GGUF model's architecture, hyper-parameters, metadata and tensors.");
  p.add("-m,--model", "FILE", "GGUF file", &model, true);
  p.flag("--json", "machine-readable output", &json);
  p.flag("--all", "print long metadata arrays in full length summaries too", &all_meta);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    auto f = GGUFFile::open(model);
    size_t total_bytes = 0;
    int64_t total_params = 0;
    std::map<std::string, int64_t> params_by_type;
    for (auto& t : f->tensors()) {
      total_bytes += t.nbytes;
      total_params += t.n_elements();
      params_by_type[dtype_name(t.type)] += t.n_elements();
    }
    // SpQR layers: parameters and bits counted as the paper does, not by bytes.
    struct SpqrInfo {
      std::string base;
      int64_t rows, cols, outliers;
      double bits;
    };
    std::vector<SpqrInfo> spqr;
    double spqr_bits = 0;
    int64_t spqr_params = 0;
    size_t spqr_bytes = 0;
    for (auto& t : f->tensors()) {
      const std::string suffix = ".spqr_codes";
      if (t.name.size() <= suffix.size() || t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix)) continue;
      const std::string base = t.name.substr(0, t.name.size() - suffix.size());
      const int64_t rows = t.ne[1], cols = f->require_tensor(base + ".spqr_perm").ne[0];
      SpqrLayer L = SpqrLayer::from_gguf(*f, base, rows, cols);
      spqr.push_back({base, rows, cols, L.n_outliers, L.bits_per_param()});
      spqr_bits += L.bits_per_param() * (double)(rows * cols);
      spqr_params += rows * cols;
      for (const char* sfx : {".spqr_codes", ".spqr_stats", ".spqr_stats2", ".spqr_perm", ".spqr_outlier_rowptr", ".spqr_outliers"})
        spqr_bytes += f->require_tensor(base + sfx).nbytes;
    }
    if (!spqr.empty()) {
      // Count each SpQR layer as its weight's parameters, not as the parts' elements.
      total_params = total_params - [&] {
        int64_t parts = 0;
        for (auto& l : spqr)
          for (const char* sfx : {".spqr_codes", ".spqr_stats", ".spqr_stats2", ".spqr_perm", ".spqr_outlier_rowptr", ".spqr_outliers"})
            parts += f->require_tensor(l.base + sfx).n_elements();
        return parts;
      }() + spqr_params;
      params_by_type.erase("I8");
      params_by_type.erase("I32");
      params_by_type["SpQR"] = spqr_params;
    }
    const double model_bits = total_params ? (8.0 * (double)(total_bytes - spqr_bytes) + spqr_bits) / (double)total_params : 0;
    // Bits per parameter by role: what the embedding and the head became, and the
    // blocks (SpQR layers counted as the paper counts them, the rest by bytes).
    struct Role {
      std::string type;
      int64_t params = 0;
      double bits = 0;
    };
    std::map<std::string, Role> roles;
    {
      std::map<std::string, bool> spqr_part;
      for (auto& l : spqr)
        for (const char* sfx : {".spqr_codes", ".spqr_stats", ".spqr_stats2", ".spqr_perm", ".spqr_outlier_rowptr", ".spqr_outliers"})
          spqr_part[l.base + sfx] = true;
      for (auto& t : f->tensors()) {
        const char* role = t.name == "token_embd.weight" ? "embedding" : t.name == "output.weight" ? "head"
                           : t.name.rfind("blk.", 0) == 0 ? "blocks" : nullptr;
        if (!role || spqr_part.count(t.name)) continue;
        Role& r = roles[role];
        const std::string ty = dtype_name(t.type);
        if (r.type.empty()) r.type = ty;
        else if (r.type.find(ty) == std::string::npos) r.type += "+" + ty;
        r.params += t.n_elements();
        r.bits += 8.0 * (double)t.nbytes;
      }
      if (!spqr.empty()) {
        Role& r = roles["blocks"];
        r.type = r.type.empty() ? "SpQR" : "SpQR+" + r.type;
        r.params += spqr_params;
        r.bits += spqr_bits;
      }
    }
    std::string arch = f->get_string("general.architecture");
    bool runnable = !arch.empty() && llama_arch_supported(arch);
    if (json) {
      std::printf("{\"file\":\"%s\",\"version\":%u,\"alignment\":%zu,\"architecture\":\"%s\",\"supported\":%s,",
                  json_escape(model).c_str(), f->version(), f->alignment(), json_escape(arch).c_str(),
                  runnable ? "true" : "false");
      std::printf("\"n_params\":%lld,\"tensor_bytes\":%zu,", (long long)total_params, total_bytes);
      std::printf("\"bits_per_param\":%.4f,\"roles\":{", model_bits);
      bool first_role = true;
      for (auto& [name, r] : roles) {
        std::printf("%s\"%s\":{\"type\":\"%s\",\"params\":%lld,\"bits_per_param\":%.4f}", first_role ? "" : ",",
                    name.c_str(), r.type.c_str(), (long long)r.params, r.params ? r.bits / (double)r.params : 0.0);
        first_role = false;
      }
      std::printf("},");
      if (!spqr.empty()) {
        std::printf("\"spqr_bits_per_param\":%.4f,\"spqr_layers\":[", spqr_bits / (double)spqr_params);
        for (size_t i = 0; i < spqr.size(); i++)
          std::printf("%s{\"name\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"bits\":%.4f,\"outliers\":%lld}", i ? "," : "",
                      spqr[i].base.c_str(), (long long)spqr[i].rows, (long long)spqr[i].cols, spqr[i].bits,
                      (long long)spqr[i].outliers);
        std::printf("],");
      }
      std::printf("\"metadata\":{");
      bool first = true;
      for (auto& kv : f->metadata()) {
        std::printf("%s\"%s\":\"%s\"", first ? "" : ",", json_escape(kv.first).c_str(),
                    json_escape(kv.second.to_string(all_meta ? 64 : 8)).c_str());
        first = false;
      }
      std::printf("},\"tensors\":[");
      first = true;
      for (auto& t : f->tensors()) {
        std::printf("%s{\"name\":\"%s\",\"type\":\"%s\",\"shape\":[", first ? "" : ",", json_escape(t.name).c_str(),
                    dtype_name(t.type));
        for (uint32_t d = 0; d < t.n_dims; d++) std::printf("%s%lld", d ? "," : "", (long long)t.ne[d]);
        std::printf("],\"bytes\":%zu,\"offset\":%llu}", t.nbytes, (unsigned long long)t.offset);
        first = false;
      }
      std::printf("]}\n");
      return 0;
    }
    std::printf("file:          %s (GGUF v%u, alignment %zu, %.2f MiB)\n", model.c_str(), f->version(), f->alignment(),
                (double)f->file_size() / (1 << 20));
    std::printf("architecture:  %s%s\n", arch.empty() ? "(none)" : arch.c_str(),
                arch.empty() ? " (vocab-only file?)" : runnable ? "" : " (not supported by engine)");
    std::printf("tokenizer:     %s\n", tokenizer_summary(*f).c_str());
    if (runnable) {
      LlamaHParams hp = LlamaHParams::from_gguf(*f);
      std::printf("hparams:       vocab %lld, dim %lld, ffn %lld, layers %lld, heads %lld, kv heads %lld, head dim %lld,\n"
                  "               rope dims %lld, rope base %g, rope %s, rms eps %g, context %lld\n",
                  (long long)hp.n_vocab, (long long)hp.n_embd, (long long)hp.n_ff, (long long)hp.n_layer,
                  (long long)hp.n_head, (long long)hp.n_head_kv, (long long)hp.head_dim, (long long)hp.n_rot,
                  hp.rope_freq_base, hp.rope_layout == cpu::RopeLayout::NeoX ? "neox" : "adjacent", hp.rms_eps,
                  (long long)hp.n_ctx_train);
      if (hp.moe())
        std::printf("experts:       %lld per block, %lld used per token (mixture of experts: softmax router, "
                    "top-%lld renormalised)\n",
                    (long long)hp.n_expert, (long long)hp.n_expert_used, (long long)hp.n_expert_used);
    }
    std::printf("parameters:    %lld (%.2f M), %.2f MiB of tensors, %.3f bits per parameter\n",
                (long long)total_params, total_params / 1e6, (double)total_bytes / (1 << 20), model_bits);
    if (!spqr.empty()) {
      std::printf("SpQR layers:   %zu, %.3f bits per parameter on average (codes, statistics, outliers, permutation)\n",
                  spqr.size(), spqr_bits / (double)spqr_params);
      for (auto& l : spqr)
        std::printf("               %-24s %6lld x %-6lld %.3f bits, %lld outliers\n", l.base.c_str(), (long long)l.rows,
                    (long long)l.cols, l.bits, (long long)l.outliers);
    }
    for (auto& [type, n] : params_by_type) std::printf("               %-5s %lld parameters\n", type.c_str(), (long long)n);
    for (const char* name : {"embedding", "head", "blocks"}) {
      auto it = roles.find(name);
      if (it == roles.end()) continue;
      const Role& r = it->second;
      std::printf("%-14s %-10s %lld parameters, %.3f bits per parameter, %.2f MiB\n", (std::string(name) + ":").c_str(),
                  r.type.c_str(), (long long)r.params, r.params ? r.bits / (double)r.params : 0.0, r.bits / 8 / (1 << 20));
    }
    std::printf("\nmetadata (%zu keys):\n", f->metadata().size());
    for (auto& kv : f->metadata())
      std::printf("  %-40s %s\n", kv.first.c_str(), kv.second.to_string(all_meta ? 64 : 8).c_str());
    std::printf("\ntensors (%zu):\n", f->tensors().size());
    for (auto& t : f->tensors()) {
      std::string shape;
      for (uint32_t d = 0; d < t.n_dims; d++) shape += (d ? " x " : "") + std::to_string(t.ne[d]);
      std::printf("  %-32s %-5s [%s] %zu bytes\n", t.name.c_str(), dtype_name(t.type), shape.c_str(), t.nbytes);
    }
    return 0;
  });
}

ENGINE_COMMAND("info", "print a model's architecture, metadata and tensors", cmd_info);
