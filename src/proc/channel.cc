#include "proc/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <exception>

#include "log.h"

namespace warren {

std::string frame_encode(FrameType type, std::string_view payload) {
  const uint32_t length = static_cast<uint32_t>(payload.size() + 1);
  std::string out;
  out.reserve(5 + payload.size());
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(length >> shift));
  out.push_back(static_cast<char>(type));
  out.append(payload);
  return out;
}

void FrameDecoder::feed(std::string_view bytes) {
  if (!broken_) buffer_.append(bytes);
}

std::optional<Frame> FrameDecoder::next() {
  if (broken_ || buffer_.size() - offset_ < 4) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + offset_);
  const uint32_t length = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
  if (length == 0 || length > kMaxFrame) {
    broken_ = true;
    std::string().swap(buffer_);
    offset_ = 0;
    return std::nullopt;
  }
  if (buffer_.size() - offset_ < 4 + size_t{length}) return std::nullopt;
  Frame frame{static_cast<FrameType>(p[4]), buffer_.substr(offset_ + 5, length - 1)};
  offset_ += 4 + length;
  // Compact once the consumed prefix dominates, so the buffer does not grow with traffic.
  if (offset_ > 4096 && offset_ * 2 > buffer_.size()) {
    buffer_.erase(0, offset_);
    offset_ = 0;
  }
  return frame;
}

Channel::Channel(event_base* base, Fd fd, FrameHandler on_frame, TroubleHandler on_trouble)
    : on_frame_(std::move(on_frame)), on_trouble_(std::move(on_trouble)) {
  evutil_make_socket_nonblocking(fd.get());
  bev_.reset(bufferevent_socket_new(base, fd.release(), BEV_OPT_CLOSE_ON_FREE));
  bufferevent_setcb(bev_.get(), on_read, nullptr, on_event, this);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
}

int Channel::fd() const { return bufferevent_getfd(bev_.get()); }

void Channel::send(FrameType type, std::string_view payload) {
  auto bytes = frame_encode(type, payload);
  bufferevent_write(bev_.get(), bytes.data(), bytes.size());
}

void Channel::flush_blocking() {
  evbuffer* out = bufferevent_get_output(bev_.get());
  const int fd = bufferevent_getfd(bev_.get());
  // A socket bufferevent keeps its output's front frozen so that only it drains the buffer.
  // We are its last user: thaw it and write the rest ourselves.
  evbuffer_unfreeze(out, 1);
  while (evbuffer_get_length(out) > 0) {
    if (evbuffer_write(out, fd) < 0) {
      if (errno != EAGAIN) return;
      pollfd pfd{fd, POLLOUT, 0};
      if (poll(&pfd, 1, 1000) <= 0) return;  // the master is gone or stuck: give up
    }
  }
}

void Channel::on_read(bufferevent* bev, void* arg) {
  auto* self = static_cast<Channel*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  const size_t n = evbuffer_get_length(in);
  self->decoder_.feed({reinterpret_cast<const char*>(evbuffer_pullup(in, -1)), n});
  evbuffer_drain(in, n);
  while (auto frame = self->decoder_.next()) {
    try {
      self->on_frame_(*frame);
    } catch (const std::exception& e) {
      log_error("channel: a frame of type {} could not be handled, dropped: {}", int(frame->type),
                e.what());
      self->on_trouble_(ChannelTrouble::frame_refused);
    }
  }
  if (self->decoder_.broken()) {
    log_error("channel: malformed frame from peer, closing");
    // Closed at once: the peer's next write fails instead of filling a buffer nobody reads.
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    shutdown(bufferevent_getfd(bev), SHUT_RDWR);
    self->on_trouble_(ChannelTrouble::malformed);
  }
}

void Channel::on_event(bufferevent*, short what, void* arg) {
  auto* self = static_cast<Channel*>(arg);
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) self->on_trouble_(ChannelTrouble::closed);
}

}  // namespace warren
