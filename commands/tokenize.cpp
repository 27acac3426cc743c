// engine tokenize: token ids of a text, space-separated on one line.
#include <cstdio>

#include "core/cli.h"
#include "core/error.h"
#include "core/gguf.h"
#include "core/io.h"
#include "models/tokenizer.h"

using namespace engine;

static int cmd_tokenize(int argc, char** argv) {
  std::string model, prompt, file;
  bool no_bos = false, pieces = false;
  ArgParser p("tokenize", "Print the token ids of a text, space-separated. Special-token text is not parsed as special tokens.");
  p.add("-m,--model", "FILE", "model or vocab GGUF", &model, true);
  p.add("-p,--prompt", "TEXT", "text to tokenize", &prompt);
  p.add("-f,--file", "FILE", "tokenize this file's bytes exactly", &file);
  p.flag("--no-bos", "do not add BOS even when the vocab asks for it", &no_bos);
  p.flag("--pieces", "print id:'piece' pairs, one per line", &pieces);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    const bool has_p = p.given("-p"), has_f = p.given("-f");
    if (has_p && has_f) throw Error("give either -p or -f, not both");
    if (!has_p && !has_f) throw Error("give the text with -p TEXT or -f FILE");
    std::string text = file.empty() ? prompt : read_file_bytes(file);
    auto f = GGUFFile::open(model);
    auto tok = Tokenizer::from_gguf(*f);
    std::vector<int32_t> ids = tok->encode(text, !no_bos);
    if (pieces) {
      for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tok->token_to_piece(id, true).c_str());
      return 0;
    }
    for (size_t i = 0; i < ids.size(); i++) std::printf("%s%d", i ? " " : "", ids[i]);
    std::printf("\n");
    return 0;
  });
}

ENGINE_COMMAND("tokenize", "print the token ids of a text", cmd_tokenize);
