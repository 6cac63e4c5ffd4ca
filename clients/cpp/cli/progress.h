// A progress bar for long transfers (`luxdb add`), drawn on a terminal only.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace luxdb::cli {

// One line of progress, `width` columns at most, e.g.
//   [#########.........]  45%  2,250/5,000 vectors  1,234 vectors/s  ETA 0:02
// `elapsed_seconds` since the start gives the rate; the ETA assumes it holds.
std::string RenderProgress(uint64_t done, uint64_t total, double elapsed_seconds, int width);

// "1:02" / "1:02:03" for a duration in seconds (rounded up).
std::string FormatDuration(double seconds);

// "12,345,678".
std::string WithThousands(uint64_t value);

// Redraws RenderProgress in place on `out` when `interactive` (a terminal: carriage return
// and erase-line), at most every 100 ms; draws nothing otherwise. Not thread-safe.
class ProgressBar {
 public:
  // Reports whether `fd` is a terminal (isatty), and its width in columns (80 if unknown).
  static bool IsTerminal(int fd);
  static int TerminalWidth(int fd);

  ProgressBar(FILE* out, bool interactive, uint64_t total, int width);

  // `done` items of `total` are finished.
  void Update(uint64_t done);
  // Draws the last state (when interactive) and ends its line.
  void Finish();
  // Seconds since construction.
  double elapsed_seconds() const;

 private:
  void Draw();

  FILE* const out_;
  const bool interactive_;
  const uint64_t total_;
  const int width_;
  const std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  uint64_t done_ = 0;
};

}  // namespace luxdb::cli
