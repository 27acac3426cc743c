// Command registry and a small declarative argument parser shared by every
// subcommand. Conventions follow llama.cpp: short and long flags, `--help` on
// every command, results on stdout, diagnostics on stderr, exit 1 on error.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace engine {

// ---- command registry -------------------------------------------------------
using CommandFn = int (*)(int argc, char** argv);  // argv[0] is the command name
struct Command {
  const char* name;
  const char* summary;
  CommandFn fn;
};
// Commands register themselves from commands/*.cpp with ENGINE_COMMAND.
std::vector<Command>& command_registry();
struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* summary, CommandFn fn) {
    command_registry().push_back({name, summary, fn});
  }
};
#define ENGINE_COMMAND(name, summary, fn) \
  static ::engine::CommandRegistrar engine_command_registrar_##fn(name, summary, fn)

// ---- argument parser ----------------------------------------------------------
class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  // Options. `names` is comma-separated, e.g. "-m,--model". Values are parsed
  // strictly: "12x" for an int is an error, not 12.
  void add(const std::string& names, const std::string& meta, const std::string& help, std::string* out,
           bool required = false);
  void add(const std::string& names, const std::string& meta, const std::string& help, int* out);
  void add(const std::string& names, const std::string& meta, const std::string& help, int64_t* out);
  void add(const std::string& names, const std::string& meta, const std::string& help, uint64_t* out);
  void add(const std::string& names, const std::string& meta, const std::string& help, float* out);
  void add(const std::string& names, const std::string& meta, const std::string& help, double* out);
  void flag(const std::string& names, const std::string& help, bool* out);
  // Positional arguments, in order; `min_count` of them are required.
  void positional(const std::string& meta, const std::string& help, std::vector<std::string>* out,
                  size_t min_count = 0, size_t max_count = SIZE_MAX);
  void epilog(const std::string& text) { epilog_ = text; }

  // Returns true to go on. On --help prints usage to stdout and returns false
  // with exit_code() 0; on a bad argument prints "error: ..." plus a hint and
  // returns false with exit_code() 1.
  bool parse(int argc, char** argv);
  int exit_code() const { return exit_code_; }
  // Whether the user gave this option explicitly (by any of its names).
  bool given(const std::string& name) const;
  std::string usage() const;

 private:
  struct Opt {
    std::vector<std::string> names;
    std::string meta, help;
    std::function<bool(const std::string&)> set;  // false: value does not parse
    std::string def;                              // default shown in --help
    bool is_flag = false;
    bool required = false;
    bool seen = false;
  };
  Opt* find(const std::string& name);
  void add_opt(const std::string& names, const std::string& meta, const std::string& help,
               std::function<bool(const std::string&)> set, std::string def);

  std::string command_, summary_, epilog_;
  std::vector<Opt> opts_;
  std::string pos_meta_, pos_help_;
  std::vector<std::string>* pos_out_ = nullptr;
  size_t pos_min_ = 0, pos_max_ = 0;
  int exit_code_ = 0;
};

// Runs `body`, turning an engine::Error (or std::exception) into
// "error: <message>" on stderr and exit code 1.
int run_command(const std::function<int()>& body);

}  // namespace engine
