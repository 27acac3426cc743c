// The loss log of a training run (CSV, one row per step, appended as the run goes,
// continued on resume) and a line chart of loss curves (SVG, no dependencies), so a
// run can be watched in a browser and two runs (single process against the swarm)
// compared on one chart.
#pragma once
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace engine::train {

// One row of the log. NaN fields are written empty: an evaluation-only row has no
// train_loss, most steps have no eval_loss.
struct LossRow {
  int64_t step = 0, samples = 0, tokens = 0;  // totals after the step
  double train_loss = NAN, eval_loss = NAN;
  double lr = NAN, grad_norm = NAN, tokens_per_s = NAN, elapsed_s = NAN;
  std::string extra;  // a driver's own columns (LossLog's extra_header), comma-joined; not read back
};

// The header, in column order.
extern const char* const kLossCsvHeader;  // "step,samples,tokens,train_loss,eval_loss,lr,grad_norm,tokens_per_s,elapsed_s"

// Reads a log back (columns found by their header names, so logs with extra or
// reordered columns still read). Error naming the file when it is missing or malformed.
std::vector<LossRow> read_loss_csv(const std::string& path);
// One CSV line, without the newline; with extra columns, r.extra (or empty cells) after the standard ones.
std::string format_loss_row(const LossRow& r, int extra_columns = 0);

// A log open for appending. Fresh (resume_step < 0): the file is replaced by the
// header. Resuming at step s: the rows already there are kept up to step s (rows
// past it were written after the checkpoint the run resumes from, and are redone),
// and new rows are appended. rows() holds everything, for redrawing the chart.
class LossLog {
 public:
  // extra_header: more columns after the standard ones ("a,b"), e.g. the swarm's.
  // An empty path keeps the rows in memory only.
  LossLog(std::string path, int64_t resume_step, std::string extra_header = "");
  void append(const LossRow& r);  // written and flushed at once
  const std::vector<LossRow>& rows() const { return rows_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int extra_columns_ = 0;
  std::ofstream out_;
  std::vector<LossRow> rows_;
};

// One curve of a chart. Points with a non-finite y are skipped.
struct Series {
  std::string name;
  std::vector<double> xs, ys;
};

// The train and eval curves of a log, named "<prefix>train" and "<prefix>eval",
// against samples (by_samples) or steps.
std::vector<Series> loss_series(const std::vector<LossRow>& rows, bool by_samples, const std::string& prefix = "");

// An SVG 1.1 line chart of the series (axes with ticks, labels, a legend), written
// atomically. Error when no series has a point.
std::string loss_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                     const std::vector<Series>& series);
void write_loss_svg(const std::string& path, const std::string& title, const std::string& x_label,
                    const std::vector<Series>& series, const std::string& y_label = "loss");

}  // namespace engine::train
