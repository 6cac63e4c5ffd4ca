#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace luxdb::cli {
namespace {

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);
// Erase to the end of the line, after a carriage return.
constexpr char kEraseLine[] = "\x1b[K";

}  // namespace

std::string WithThousands(uint64_t value) {
  std::string digits = absl::StrCat(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string FormatDuration(double seconds) {
  const uint64_t s = seconds <= 0 ? 0 : static_cast<uint64_t>(std::ceil(seconds));
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}

std::string RenderProgress(uint64_t done, uint64_t total, double elapsed_seconds, int width) {
  const double fraction = total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / total);
  const double rate = elapsed_seconds > 0 ? done / elapsed_seconds : 0;
  std::string text = absl::StrFormat("%3d%%  %s/%s vectors", static_cast<int>(fraction * 100),
                                     WithThousands(done), WithThousands(total));
  if (rate > 0) absl::StrAppend(&text, "  ", WithThousands(std::llround(rate)), " vectors/s");
  if (done >= total) {
    absl::StrAppend(&text, "  in ", FormatDuration(elapsed_seconds));
  } else if (rate > 0) {
    absl::StrAppend(&text, "  ETA ", FormatDuration((total - done) / rate));
  } else {
    absl::StrAppend(&text, "  ETA --:--");
  }
  // The bar takes what is left of the line, between 10 and 40 columns.
  const int bar = std::min<int>(40, width - 3 - static_cast<int>(text.size()) - 1);
  if (bar < 10) return text.substr(0, std::max(0, width - 1));
  const int filled = static_cast<int>(fraction * bar);
  return absl::StrCat("[", std::string(filled, '#'), std::string(bar - filled, '.'), "] ", text);
}

bool ProgressBar::IsTerminal(int fd) { return isatty(fd) == 1; }

int ProgressBar::TerminalWidth(int fd) {
  winsize size{};
  if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 80;
}

ProgressBar::ProgressBar(FILE* out, bool interactive, uint64_t total, int width)
    : out_(out),
      interactive_(interactive),
      total_(total),
      width_(width),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
  Draw();
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressBar::Update(uint64_t done) {
  done_ = done;
  if (std::chrono::steady_clock::now() - last_draw_ >= kRedrawInterval) Draw();
}

void ProgressBar::Finish() {
  if (!interactive_) return;
  Draw();
  std::fputs("\n", out_);
  std::fflush(out_);
}

void ProgressBar::Draw() {
  if (!interactive_) return;
  last_draw_ = std::chrono::steady_clock::now();
  std::fputs(
      absl::StrCat("\r", RenderProgress(done_, total_, elapsed_seconds(), width_), kEraseLine)
          .c_str(),
      out_);
  std::fflush(out_);
}

}  // namespace luxdb::cli
