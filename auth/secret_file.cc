#include "auth/secret_file.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace luxdb::auth {
namespace {

constexpr size_t kGeneratedSecretBytes = 32;

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(errno, absl::StrCat(what, " '", path, "'"));
}

absl::Status WriteNewSecret(const std::string& data_dir, const std::string& path,
                            const std::string& secret) {
  const std::string temp = path + ".tmp";
  ::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", temp);
  const std::string line = secret + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
                       ::fsync(fd) == 0;
  ::close(fd);
  if (!written) return Errno("cannot write", temp);
  // link() fails if another process created the file meanwhile: then both use that one.
  if (::link(temp.c_str(), path.c_str()) != 0 && errno != EEXIST)
    return Errno("cannot create", path);
  ::unlink(temp.c_str());
  const int dir = ::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SecretFile> LoadOrCreateSecret(const std::string& data_dir) {
  if (::mkdir(data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Errno("cannot create data directory", data_dir);
  }
  SecretFile result;
  result.path = absl::StrCat(data_dir, "/", kSecretFileName);
  struct stat info;
  if (::stat(result.path.c_str(), &info) != 0) {
    if (errno != ENOENT) return Errno("cannot read", result.path);
    std::array<uint8_t, kGeneratedSecretBytes> random;
    if (RAND_bytes(random.data(), static_cast<int>(random.size())) != 1) {
      return absl::InternalError("OpenSSL could not generate a random secret");
    }
    const std::string secret = absl::WebSafeBase64Escape(
        absl::string_view(reinterpret_cast<const char*>(random.data()), random.size()));
    if (absl::Status s = WriteNewSecret(data_dir, result.path, secret); !s.ok()) return s;
    result.created = true;
    if (::stat(result.path.c_str(), &info) != 0) return Errno("cannot read", result.path);
  }
  if ((info.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("secret file '", result.path, "' is readable by other users (mode ",
                     (info.st_mode >> 6) & 7, (info.st_mode >> 3) & 7, info.st_mode & 7,
                     "); run chmod 600 on it"));
  }
  absl::StatusOr<std::string> secret = ReadSecretFile(result.path);
  if (!secret.ok()) return secret.status();
  result.secret = *std::move(secret);
  return result;
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Errno("cannot read secret file", path);
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return Errno("cannot read secret file", path);
  std::string secret(absl::StripAsciiWhitespace(text.str()));
  if (secret.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("secret file '", path, "' is empty"));
  }
  return secret;
}

}  // namespace luxdb::auth
