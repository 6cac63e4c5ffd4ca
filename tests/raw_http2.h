// A deliberately minimal HTTP/2 client for attack tests: it speaks just enough of the protocol
// (preface, SETTINGS, HEADERS with literal HPACK fields, DATA under flow control, PING and
// SETTINGS acknowledgements) to open gRPC streams and then misbehave as an attacker would:
// announce a huge message and stop sending, or open streams and never send a message. It does
// not decode the server's headers; it records which streams the server ended (RST_STREAM or
// HEADERS with END_STREAM), GOAWAY, and the connection's close.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace luxdb::testing {

class RawHttp2Connection {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  // Connects to 127.0.0.1:`port`. With `handshake`, sends the HTTP/2 preface and SETTINGS;
  // without, sends nothing at all (a silent connection).
  static absl::StatusOr<std::unique_ptr<RawHttp2Connection>> Connect(int port, bool handshake);
  ~RawHttp2Connection();
  RawHttp2Connection(const RawHttp2Connection&) = delete;
  RawHttp2Connection& operator=(const RawHttp2Connection&) = delete;

  // Opens a gRPC stream to `path` ("/luxdb.v1.LuxDB/AddItems") with `extra` headers (e.g.
  // authorization) and no body yet. Returns its stream id.
  absl::StatusOr<uint32_t> OpenStream(const std::string& path, const Headers& extra);

  // Sends the 5-byte gRPC prefix announcing a message of `announced` bytes, then up to `bytes`
  // bytes of it, as fast as the server's flow-control windows allow, for at most `timeout`.
  // Never ends the stream. Returns how many message bytes the server let it send.
  uint64_t SendMessageBody(uint32_t stream, uint32_t announced, uint64_t bytes,
                           std::chrono::milliseconds timeout);

  // Reads and answers frames for `timeout` (or until the connection closes).
  void Pump(std::chrono::milliseconds timeout);

  bool StreamEnded(uint32_t stream) const { return ended_.contains(stream); }
  bool GoawayReceived() const { return goaway_; }
  bool Closed() const { return closed_; }
  size_t streams_ended() const { return ended_.size(); }
  // The largest initial stream window the server announced (SETTINGS_INITIAL_WINDOW_SIZE):
  // what a stream may send before the server has read any of it.
  int64_t largest_initial_window() const { return largest_initial_window_; }

 private:
  RawHttp2Connection(int fd, bool silent) : fd_(fd), silent_(silent) {}
  bool Write(const std::string& bytes);
  bool WriteFrame(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload);
  // Reads what is there (waiting up to `wait`) and handles every complete frame.
  void ReadFrames(std::chrono::milliseconds wait);
  void Handle(uint8_t type, uint8_t flags, uint32_t stream, const std::string& payload);

  int fd_;
  const bool silent_;  // never writes (a connection that never completes its handshake)
  std::string in_;     // received bytes not yet parsed
  uint32_t next_stream_ = 1;
  int64_t connection_window_ = 65535;
  int64_t initial_stream_window_ = 65535;
  int64_t largest_initial_window_ = 65535;
  uint32_t max_frame_ = 16384;
  std::map<uint32_t, int64_t> stream_windows_;
  std::set<uint32_t> ended_;
  bool goaway_ = false;
  bool closed_ = false;
};

}  // namespace luxdb::testing
