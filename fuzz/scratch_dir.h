// A per-process scratch directory for fuzz targets, on tmpfs where there is one.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace luxdb::fuzz {

// Creates "<base>/<prefix>-<pid>", base being /dev/shm if writable (fsync is free there, and
// the fuzzer's writes never reach a disk) or else the system temp directory. Directories of
// earlier runs whose process is gone (a crash skips clean-up, and -minimize_crash crashes
// hundreds of times) are removed first. The caller removes its own at exit.
inline std::string MakeScratchDir(std::string_view prefix) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path base = "/dev/shm";
  if (!fs::is_directory(base, error) || ::access(base.c_str(), W_OK) != 0) {
    base = fs::temp_directory_path();
  }
  const std::string stem = std::string(prefix) + "-";
  for (const fs::directory_entry& entry : fs::directory_iterator(base, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(stem, 0) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + stem.size(), &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) fs::remove_all(entry, error);
  }
  const fs::path dir = base / (stem + std::to_string(::getpid()));
  fs::remove_all(dir, error);
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace luxdb::fuzz
