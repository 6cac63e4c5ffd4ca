#include "tests/raw_http2.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace luxdb::testing {
namespace {

constexpr char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr uint8_t kData = 0x0, kHeaders = 0x1, kRstStream = 0x3, kSettings = 0x4, kPing = 0x6,
                  kGoaway = 0x7, kWindowUpdate = 0x8;
constexpr uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4;
constexpr uint16_t kSettingsInitialWindowSize = 0x4, kSettingsMaxFrameSize = 0x5;
constexpr size_t kFrameHeaderBytes = 9;

using Clock = std::chrono::steady_clock;

uint32_t ReadBigEndian(const std::string& bytes, size_t at, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i) value = (value << 8) | static_cast<uint8_t>(bytes[at + i]);
  return value;
}

void AppendBigEndian(std::string* out, uint32_t value, size_t width) {
  for (size_t i = width; i-- > 0;) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// HPACK integer with a 7-bit prefix (RFC 7541 5.1), high bit 0 (no Huffman coding).
void AppendHpackLength(std::string* out, size_t value) {
  if (value < 127) {
    out->push_back(static_cast<char>(value));
    return;
  }
  out->push_back(static_cast<char>(127));
  value -= 127;
  while (value >= 128) {
    out->push_back(static_cast<char>((value % 128) + 128));
    value /= 128;
  }
  out->push_back(static_cast<char>(value));
}

// A "literal header field without indexing, new name" (RFC 7541 6.2.2).
void AppendHeader(std::string* block, const std::string& name, const std::string& value) {
  block->push_back(0);
  AppendHpackLength(block, name.size());
  block->append(name);
  AppendHpackLength(block, value.size());
  block->append(value);
}

}  // namespace

absl::StatusOr<std::unique_ptr<RawHttp2Connection>> RawHttp2Connection::Connect(int port,
                                                                                bool handshake) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    close(fd);
    return absl::ErrnoToStatus(error, absl::StrCat("connect to 127.0.0.1:", port));
  }
  const timeval send_timeout{.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  const int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  std::unique_ptr<RawHttp2Connection> connection(new RawHttp2Connection(fd, !handshake));
  if (handshake && (!connection->Write(std::string(kPreface, sizeof(kPreface) - 1)) ||
                    !connection->WriteFrame(kSettings, 0, 0, ""))) {
    return absl::UnavailableError("cannot send the HTTP/2 preface");
  }
  return connection;
}

RawHttp2Connection::~RawHttp2Connection() { close(fd_); }

bool RawHttp2Connection::Write(const std::string& bytes) {
  if (silent_) return false;
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      closed_ = true;
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool RawHttp2Connection::WriteFrame(uint8_t type, uint8_t flags, uint32_t stream,
                                    const std::string& payload) {
  std::string frame;
  frame.reserve(kFrameHeaderBytes + payload.size());
  AppendBigEndian(&frame, static_cast<uint32_t>(payload.size()), 3);
  frame.push_back(static_cast<char>(type));
  frame.push_back(static_cast<char>(flags));
  AppendBigEndian(&frame, stream & 0x7fffffff, 4);
  frame.append(payload);
  return Write(frame);
}

absl::StatusOr<uint32_t> RawHttp2Connection::OpenStream(const std::string& path,
                                                        const Headers& extra) {
  const uint32_t stream = next_stream_;
  next_stream_ += 2;
  std::string block;
  AppendHeader(&block, ":method", "POST");
  AppendHeader(&block, ":scheme", "http");
  AppendHeader(&block, ":path", path);
  AppendHeader(&block, ":authority", "127.0.0.1");
  AppendHeader(&block, "content-type", "application/grpc");
  AppendHeader(&block, "te", "trailers");
  for (const auto& [name, value] : extra) AppendHeader(&block, name, value);
  if (!WriteFrame(kHeaders, kEndHeaders, stream, block)) {
    return absl::UnavailableError("the server closed the connection");
  }
  stream_windows_[stream] = initial_stream_window_;
  return stream;
}

uint64_t RawHttp2Connection::SendMessageBody(uint32_t stream, uint32_t announced, uint64_t bytes,
                                             std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  std::string pending;  // the gRPC prefix: not compressed, the announced length
  pending.push_back(0);
  AppendBigEndian(&pending, announced, 4);
  uint64_t sent = 0;
  while ((!pending.empty() || sent < bytes) && !closed_ && !ended_.contains(stream) &&
         Clock::now() < deadline) {
    ReadFrames(std::chrono::milliseconds(0));
    const int64_t window = std::min(connection_window_, stream_windows_[stream]);
    if (window <= 0) {
      ReadFrames(std::chrono::milliseconds(20));
      continue;
    }
    std::string payload;
    if (!pending.empty()) {
      if (window < static_cast<int64_t>(pending.size())) {
        ReadFrames(std::chrono::milliseconds(20));
        continue;
      }
      payload.swap(pending);
    }
    const uint64_t room = static_cast<uint64_t>(std::min<int64_t>(window, max_frame_) -
                                                static_cast<int64_t>(payload.size()));
    const uint64_t body = std::min(room, bytes - sent);
    payload.append(body, '\0');
    if (!WriteFrame(kData, 0, stream, payload)) break;
    sent += body;
    connection_window_ -= static_cast<int64_t>(payload.size());
    stream_windows_[stream] -= static_cast<int64_t>(payload.size());
  }
  return sent;
}

void RawHttp2Connection::Pump(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (!closed_) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    ReadFrames(std::min(left, std::chrono::milliseconds(100)));
  }
}

void RawHttp2Connection::ReadFrames(std::chrono::milliseconds wait) {
  if (closed_) return;
  pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
  if (poll(&p, 1, static_cast<int>(wait.count())) <= 0) return;
  char buffer[65536];
  while (true) {
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      in_.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) closed_ = true;
    break;
  }
  size_t at = 0;
  while (in_.size() - at >= kFrameHeaderBytes) {
    const uint32_t length = ReadBigEndian(in_, at, 3);
    if (in_.size() - at < kFrameHeaderBytes + length) break;
    const uint8_t type = static_cast<uint8_t>(in_[at + 3]);
    const uint8_t flags = static_cast<uint8_t>(in_[at + 4]);
    const uint32_t stream = ReadBigEndian(in_, at + 5, 4) & 0x7fffffff;
    Handle(type, flags, stream, in_.substr(at + kFrameHeaderBytes, length));
    at += kFrameHeaderBytes + length;
  }
  in_.erase(0, at);
}

void RawHttp2Connection::Handle(uint8_t type, uint8_t flags, uint32_t stream,
                                const std::string& payload) {
  switch (type) {
    case kSettings:
      if ((flags & kAck) != 0) return;
      for (size_t at = 0; at + 6 <= payload.size(); at += 6) {
        const uint32_t id = ReadBigEndian(payload, at, 2);
        const uint32_t value = ReadBigEndian(payload, at + 2, 4);
        if (id == kSettingsInitialWindowSize) {
          const int64_t delta = int64_t{value} - initial_stream_window_;
          initial_stream_window_ = value;
          largest_initial_window_ = std::max(largest_initial_window_, initial_stream_window_);
          for (auto& [open, window] : stream_windows_) window += delta;
        } else if (id == kSettingsMaxFrameSize) {
          max_frame_ = value;
        }
      }
      WriteFrame(kSettings, kAck, 0, "");
      return;
    case kPing:
      if ((flags & kAck) == 0) WriteFrame(kPing, kAck, 0, payload);
      return;
    case kWindowUpdate: {
      if (payload.size() < 4) return;
      const int64_t increment = ReadBigEndian(payload, 0, 4) & 0x7fffffff;
      if (stream == 0) {
        connection_window_ += increment;
      } else {
        stream_windows_[stream] += increment;
      }
      return;
    }
    case kRstStream:
      ended_.insert(stream);
      return;
    case kHeaders:
    case kData:
      if ((flags & kEndStream) != 0) ended_.insert(stream);
      return;
    case kGoaway:
      goaway_ = true;
      return;
    default:
      return;
  }
}

}  // namespace luxdb::testing
