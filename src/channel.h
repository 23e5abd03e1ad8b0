// Master <-> worker messages over a socketpair: length-prefixed frames carrying JSON payloads.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "handles.h"

namespace warren {

enum class FrameType : uint8_t {
  ready = 1,             // worker -> master: serving; the master may now drain the old generation
  snapshot = 2,          // worker -> master: counters (Snapshot JSON)
  stats_request = 3,     // worker -> master: {"id": n, "format": "json"|"prometheus"}
  stats_reply = 4,       // master -> worker: {"id": n, "body": ...}
  snapshot_request = 5,  // master -> worker: send a snapshot now
};

struct Frame {
  FrameType type;
  std::string payload;
};

// Wire form: 4-byte big-endian length of (type byte + payload), the type byte, the payload.
std::string frame_encode(FrameType type, std::string_view payload);

// Incremental decoder: feed bytes as they come, take whole frames out.
class FrameDecoder {
 public:
  static constexpr size_t kMaxFrame = 16 << 20;

  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next whole frame, or nullopt when more bytes are needed or the stream is broken.
  std::optional<Frame> next();
  // A frame announced a length of 0 or over kMaxFrame: the peer is not speaking our protocol.
  bool broken() const { return broken_; }

 private:
  std::string buffer_;
  size_t offset_ = 0;
  bool broken_ = false;
};

// One end of the socketpair on an event loop.
class Channel {
 public:
  using FrameHandler = std::function<void(const Frame&)>;
  using CloseHandler = std::function<void()>;

  Channel(event_base* base, Fd fd, FrameHandler on_frame, CloseHandler on_close);
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  void send(FrameType type, std::string_view payload);
  // Sends what is buffered with a blocking write: used once, by a worker on its way out.
  void flush_blocking();
  int fd() const;

 private:
  static void on_read(bufferevent* bev, void* arg);
  static void on_event(bufferevent* bev, short what, void* arg);

  BuffereventPtr bev_;
  FrameDecoder decoder_;
  FrameHandler on_frame_;
  CloseHandler on_close_;
};

}  // namespace warren
