#include "train/loss_chart.h"

#include "core/xml_escape.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/io.h"

namespace engine::train {

const char* const kLossCsvHeader = "step,samples,tokens,train_loss,eval_loss,lr,grad_norm,tokens_per_s,elapsed_s";

namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == ',') out.push_back(cur), cur.clear();
    else if (c != '\r') cur += c;
  }
  out.push_back(cur);
  return out;
}

// "%.6g" but empty for NaN, so a missing value reads back as missing.
std::string num(double v, const char* fmt = "%.6g") {
  if (!std::isfinite(v)) return "";
  char buf[48];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A tick spacing of 1, 2 or 5 times a power of ten giving about `n` intervals.
double nice_step(double range, int n) {
  const double raw = range / n;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

struct Axis {
  double lo = 0, hi = 1, step = 1;
  // Extends [lo, hi] outwards to whole ticks (a flat range gets some room).
  static Axis fit(double lo, double hi, int n) {
    if (!(hi > lo)) {
      const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
      lo -= pad, hi += pad;
    }
    Axis a;
    a.step = nice_step(hi - lo, n);
    a.lo = std::floor(lo / a.step + 1e-9) * a.step;
    a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
    return a;
  }
  std::string label(double v) const {
    if (std::fabs(v) < step * 1e-6) v = 0;  // no "-0" or "1e-17" at the origin
    if (step >= 1000 && std::fmod(v, 1000) == 0 && std::fabs(v) >= 10000) return num(v / 1000, "%.0f") + "k";
    const int decimals = step >= 1 ? 0 : (int)std::ceil(-std::log10(step) - 1e-9);
    char fmt[16];
    std::snprintf(fmt, sizeof fmt, "%%.%df", std::min(decimals, 9));
    return num(v, fmt);
  }
};

}  // namespace

std::string format_loss_row(const LossRow& r, int extra_columns) {
  std::string line = std::to_string(r.step) + "," + std::to_string(r.samples) + "," + std::to_string(r.tokens) + "," +
                     num(r.train_loss) + "," + num(r.eval_loss) + "," + num(r.lr, "%.4e") + "," + num(r.grad_norm) +
                     "," + num(r.tokens_per_s, "%.1f") + "," + num(r.elapsed_s, "%.3f");
  if (extra_columns > 0) line += "," + (r.extra.empty() ? std::string((size_t)(extra_columns - 1), ',') : r.extra);
  return line;
}

std::vector<LossRow> read_loss_csv(const std::string& path) {
  std::istringstream in(read_file_bytes(path));
  std::string line;
  if (!std::getline(in, line)) throw Error(path + ": empty loss log (no header)");
  const std::vector<std::string> cols = split_csv(line);
  auto col = [&](const char* name) {
    const auto it = std::find(cols.begin(), cols.end(), name);
    return it == cols.end() ? -1 : (int)(it - cols.begin());
  };
  const int c_step = col("step");
  if (c_step < 0) throw Error(path + ": not a loss log (no 'step' column in the header)");
  const int c[8] = {col("samples"), col("tokens"),    col("train_loss"),   col("eval_loss"),
                    col("lr"),      col("grad_norm"), col("tokens_per_s"), col("elapsed_s")};
  std::vector<LossRow> rows;
  for (int ln = 2; std::getline(in, line); ln++) {
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> f = split_csv(line);
    auto get = [&](int i) {
      if (i < 0 || i >= (int)f.size() || f[i].empty()) return (double)NAN;
      char* end = nullptr;
      const double v = std::strtod(f[i].c_str(), &end);
      if (end == f[i].c_str() || *end) throw Error(path + ":" + std::to_string(ln) + ": bad number '" + f[i] + "'");
      return v;
    };
    LossRow r;
    const double step = get(c_step);
    if (!std::isfinite(step)) throw Error(path + ":" + std::to_string(ln) + ": row without a step");
    r.step = (int64_t)step;
    const double samples = get(c[0]), tokens = get(c[1]);
    r.samples = std::isfinite(samples) ? (int64_t)samples : 0;
    r.tokens = std::isfinite(tokens) ? (int64_t)tokens : 0;
    r.train_loss = get(c[2]), r.eval_loss = get(c[3]), r.lr = get(c[4]);
    r.grad_norm = get(c[5]), r.tokens_per_s = get(c[6]), r.elapsed_s = get(c[7]);
    rows.push_back(r);
  }
  return rows;
}

LossLog::LossLog(std::string path, int64_t resume_step, std::string extra_header) : path_(std::move(path)) {
  if (!extra_header.empty()) extra_columns_ = 1 + (int)std::count(extra_header.begin(), extra_header.end(), ',');
  if (resume_step >= 0 && std::filesystem::exists(path_)) {
    for (const LossRow& r : read_loss_csv(path_))
      if (r.step <= resume_step) rows_.push_back(r);
  }
  if (path_.empty()) return;  // rows kept in memory only (no log file asked for)
  // Rewritten whole (atomically) so rows past the checkpoint are gone before appending.
  std::string text = std::string(kLossCsvHeader) + (extra_header.empty() ? "" : "," + extra_header) + "\n";
  for (const LossRow& r : rows_) text += format_loss_row(r, extra_columns_) + "\n";
  write_file_atomic(path_, text.data(), text.size());
  out_.open(path_, std::ios::app);
  if (!out_) throw Error(path_ + ": cannot write the loss log");
}

void LossLog::append(const LossRow& r) {
  rows_.push_back(r);
  if (path_.empty()) return;
  out_ << format_loss_row(r, extra_columns_) << "\n";
  out_.flush();
  if (!out_) throw Error(path_ + ": cannot write the loss log");
}

std::vector<Series> loss_series(const std::vector<LossRow>& rows, bool by_samples, const std::string& prefix) {
  Series tr{prefix + "train", {}, {}}, ev{prefix + "eval", {}, {}};
  for (const LossRow& r : rows) {
    const double x = by_samples ? (double)r.samples : (double)r.step;
    if (std::isfinite(r.train_loss)) tr.xs.push_back(x), tr.ys.push_back(r.train_loss);
    if (std::isfinite(r.eval_loss)) ev.xs.push_back(x), ev.ys.push_back(r.eval_loss);
  }
  return {tr, ev};
}

std::string loss_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                     const std::vector<Series>& series) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& s : series)
    for (size_t i = 0; i < s.xs.size() && i < s.ys.size(); i++)
      if (std::isfinite(s.xs[i]) && std::isfinite(s.ys[i])) {
        x0 = std::min(x0, s.xs[i]), x1 = std::max(x1, s.xs[i]);
        y0 = std::min(y0, s.ys[i]), y1 = std::max(y1, s.ys[i]);
      }
  if (!std::isfinite(x0)) throw Error("loss chart '" + title + "': no points to draw");
  const Axis ax = Axis::fit(x0, x1, 8), ay = Axis::fit(y0, y1, 6);
  // Plot area inside the canvas; room on the left for tick labels, on the right for the legend.
  const double W = 800, H = 480, L = 70, R = 170, T = 40, B = 55;
  const double pw = W - L - R, ph = H - T - B;
  auto px = [&](double x) { return L + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double y) { return T + ph - (y - ay.lo) / (ay.hi - ay.lo) * ph; };
  static const char* const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

  std::string o;
  char buf[256];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(buf, sizeof buf, fmt, args...);
    o += buf;
  };
  add("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  add("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
      W, H, W, H);
  add("<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
  o += "<text x=\"" + num(L + pw / 2, "%.1f") + "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" +
       xml_escape(title) + "</text>\n";
  // Grid lines and tick labels.
  for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step) {
    add("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", px(v), T, px(v), T + ph);
    o += "<text x=\"" + num(px(v), "%.1f") + "\" y=\"" + num(T + ph + 16, "%.1f") + "\" text-anchor=\"middle\">" +
         ax.label(v) + "</text>\n";
  }
  for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step) {
    add("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n", L, py(v), L + pw, py(v));
    o += "<text x=\"" + num(L - 6, "%.1f") + "\" y=\"" + num(py(v) + 4, "%.1f") + "\" text-anchor=\"end\">" +
         ay.label(v) + "</text>\n";
  }
  add("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", L, T, pw, ph);
  o += "<text x=\"" + num(L + pw / 2, "%.1f") + "\" y=\"" + num(H - 12, "%.1f") + "\" text-anchor=\"middle\">" +
       xml_escape(x_label) + "</text>\n";
  o += "<text transform=\"translate(18 " + num(T + ph / 2, "%.1f") + ") rotate(-90)\" text-anchor=\"middle\">" +
       xml_escape(y_label) + "</text>\n";
  // The curves, then the legend (one entry per series, even an empty one, so a chart
  // drawn before the first evaluation still names both curves).
  for (size_t k = 0; k < series.size(); k++) {
    const Series& s = series[k];
    const char* color = colors[k % (sizeof colors / sizeof *colors)];
    std::string pts;
    size_t n = 0;
    for (size_t i = 0; i < s.xs.size() && i < s.ys.size(); i++)
      if (std::isfinite(s.xs[i]) && std::isfinite(s.ys[i])) {
        if (n++) pts += ' ';
        pts += num(px(s.xs[i]), "%.1f") + "," + num(py(s.ys[i]), "%.1f");
      }
    o += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"1.5\" points=\"" + pts +
         "\"/>\n";
    if (n == 1) o += "<circle cx=\"" + pts.substr(0, pts.find(',')) + "\" cy=\"" + pts.substr(pts.find(',') + 1) +
                     "\" r=\"3\" fill=\"" + color + "\"/>\n";
    const double ly = T + 10 + 20 * (double)k;
    add("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>\n", L + pw + 12, ly,
        L + pw + 36, ly, color);
    o += "<text x=\"" + num(L + pw + 42, "%.1f") + "\" y=\"" + num(ly + 4, "%.1f") + "\">" + xml_escape(s.name) +
         "</text>\n";
  }
  o += "</svg>\n";
  return o;
}

void write_loss_svg(const std::string& path, const std::string& title, const std::string& x_label,
                    const std::vector<Series>& series, const std::string& y_label) {
  const std::string svg = loss_svg(title, x_label, y_label, series);
  write_file_atomic(path, svg.data(), svg.size());
}

}  // namespace engine::train
