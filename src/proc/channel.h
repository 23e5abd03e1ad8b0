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

  // Bytes after a broken frame are dropped: a broken stream holds no memory.
  void feed(std::string_view bytes);
  // The next whole frame, or nullopt when more bytes are needed or the stream is broken.
  std::optional<Frame> next();
  // A frame announced a length of 0 or over kMaxFrame: the peer is not speaking our protocol.
  bool broken() const { return broken_; }
  // Bytes held: at most one frame in progress (kMaxFrame) plus what one feed() added.
  size_t buffered() const { return buffer_.size() - offset_; }

 private:
  std::string buffer_;
  size_t offset_ = 0;
  bool broken_ = false;
};

// What went wrong with a channel, for its owner to act on.
enum class ChannelTrouble {
  closed,         // the peer closed or the socket failed
  malformed,      // a frame of length 0 or over kMaxFrame: the channel reads no more
  frame_refused,  // the frame handler threw on one frame; the frame was dropped, the channel lives
};

// One end of the socketpair on an event loop. No exception from the frame handler reaches
// libevent: it is logged and reported as frame_refused.
class Channel : NonCopyable {
 public:
  using FrameHandler = std::function<void(const Frame&)>;
  using TroubleHandler = std::function<void(ChannelTrouble)>;

  Channel(event_base* base, Fd fd, FrameHandler on_frame, TroubleHandler on_trouble);

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
  TroubleHandler on_trouble_;
};

}  // namespace warren
