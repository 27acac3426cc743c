#include "core/cli.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "core/error.h"

namespace engine {

std::vector<Command>& command_registry() {
  static std::vector<Command> registry;
  return registry;
}

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

static std::vector<std::string> split_names(const std::string& names) {
  std::vector<std::string> out;
  std::stringstream ss(names);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

void ArgParser::add_opt(const std::string& names, const std::string& meta, const std::string& help,
                        std::function<bool(const std::string&)> set, std::string def) {
  Opt o;
  o.names = split_names(names);
  o.meta = meta;
  o.help = help;
  o.set = std::move(set);
  o.def = std::move(def);
  opts_.push_back(std::move(o));
}

static bool parse_i64(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end) return false;
  *v = x;
  return true;
}

static bool parse_f64(const std::string& s, double* v) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(s.c_str(), &end);
  if (errno || *end || !std::isfinite(x)) return false;
  *v = x;
  return true;
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help,
                    std::string* out, bool required) {
  add_opt(names, meta, help, [out](const std::string& s) { *out = s; return true; }, *out);
  opts_.back().required = required;
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help, int* out) {
  add_opt(names, meta, help, [out](const std::string& s) {
    int64_t v;
    if (!parse_i64(s, &v) || v < INT32_MIN || v > INT32_MAX) return false;
    *out = (int)v;
    return true;
  }, std::to_string(*out));
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help,
                    int64_t* out) {
  add_opt(names, meta, help, [out](const std::string& s) { return parse_i64(s, out); },
          std::to_string(*out));
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help,
                    uint64_t* out) {
  add_opt(names, meta, help, [out](const std::string& s) {
    if (s.empty() || s[0] == '-') return false;
    errno = 0;
    char* end = nullptr;
    unsigned long long x = std::strtoull(s.c_str(), &end, 10);
    if (errno || *end) return false;
    *out = x;
    return true;
  }, std::to_string(*out));
}

static std::string fmt_num(double v) {
  std::ostringstream ss;
  ss << v;
  return ss.str();
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help, float* out) {
  add_opt(names, meta, help, [out](const std::string& s) {
    double v;
    if (!parse_f64(s, &v)) return false;
    *out = (float)v;
    return true;
  }, fmt_num(*out));
}

void ArgParser::add(const std::string& names, const std::string& meta, const std::string& help,
                    double* out) {
  add_opt(names, meta, help, [out](const std::string& s) { return parse_f64(s, out); }, fmt_num(*out));
}

void ArgParser::flag(const std::string& names, const std::string& help, bool* out) {
  add_opt(names, "", help, [out](const std::string&) { *out = true; return true; }, "");
  opts_.back().is_flag = true;
}

void ArgParser::positional(const std::string& meta, const std::string& help, std::vector<std::string>* out,
                           size_t min_count, size_t max_count) {
  pos_meta_ = meta;
  pos_help_ = help;
  pos_out_ = out;
  pos_min_ = min_count;
  pos_max_ = max_count;
}

ArgParser::Opt* ArgParser::find(const std::string& name) {
  for (auto& o : opts_)
    for (auto& n : o.names)
      if (n == name) return &o;
  return nullptr;
}

bool ArgParser::given(const std::string& name) const {
  for (auto& o : opts_)
    for (auto& n : o.names)
      if (n == name) return o.seen;
  return false;
}

std::string ArgParser::usage() const {
  std::ostringstream ss;
  ss << "usage: engine " << command_ << " [options]";
  if (pos_out_) ss << " " << pos_meta_;
  ss << "\n\n" << summary_ << "\n\noptions:\n";
  for (auto& o : opts_) {
    std::string left = "  ";
    for (size_t i = 0; i < o.names.size(); i++) left += (i ? ", " : "") + o.names[i];
    if (!o.is_flag) left += " " + o.meta;
    ss << left;
    if (left.size() < 30) ss << std::string(30 - left.size(), ' ');
    else ss << "\n" << std::string(30, ' ');
    ss << o.help;
    if (o.required) ss << " (required)";
    else if (!o.is_flag && !o.def.empty() && o.help.find("(default") == std::string::npos)
      ss << " (default: " << o.def << ")";
    ss << "\n";
  }
  ss << "  -h, --help" << std::string(20, ' ') << "show this help and exit\n";
  if (pos_out_ && !pos_help_.empty()) ss << "\n" << pos_meta_ << ": " << pos_help_ << "\n";
  if (!epilog_.empty()) ss << "\n" << epilog_ << "\n";
  return ss.str();
}

bool ArgParser::parse(int argc, char** argv) {
  auto fail = [&](const std::string& msg) {
    std::fprintf(stderr, "error: %s\n(see 'engine %s --help')\n", msg.c_str(), command_.c_str());
    exit_code_ = 1;
    return false;
  };
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage().c_str(), stdout);
      exit_code_ = 0;
      return false;
    }
    if (a.size() > 1 && a[0] == '-' && !(a.size() > 1 && (std::isdigit((unsigned char)a[1]) || a[1] == '.'))) {
      std::string value;
      bool has_inline = false;
      size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
      Opt* o = find(a);
      if (!o) return fail("unknown option '" + a + "'");
      if (o->is_flag) {
        if (has_inline) return fail("option '" + a + "' takes no value");
        o->set("");
        o->seen = true;
        continue;
      }
      if (!has_inline) {
        if (i + 1 >= argc) return fail("option '" + a + "' needs a value (" + o->meta + ")");
        value = argv[++i];
      }
      if (!o->set(value)) return fail("invalid value '" + value + "' for " + a + " (" + o->meta + ")");
      o->seen = true;
      continue;
    }
    if (!pos_out_) return fail("unexpected argument '" + a + "'");
    pos_out_->push_back(a);
  }
  for (auto& o : opts_)
    if (o.required && !o.seen) return fail("missing required option " + o.names.back());
  if (pos_out_) {
    if (pos_out_->size() < pos_min_) return fail("missing " + pos_meta_);
    if (pos_out_->size() > pos_max_) return fail("too many arguments");
  }
  return true;
}

int run_command(const std::function<int()>& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}

}  // namespace engine
