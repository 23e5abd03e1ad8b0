// Consumer acks batched with basic.ack `multiple`: one frame acks a whole run of settled
// deliveries instead of one frame per message. A consumer whose messages finish out of order
// (a forwarder with many backend requests in flight) tells the batch about every delivery and
// every settlement; flush() says which ack frames to send, at most once per loop pass.
//
// The rule: a multiple ack up to tag N acks every delivery of the channel at or below N that
// the broker still holds unacked, so N may only be the end of a run in which every tag was
// settled by us: acked (and waiting here) or already sent as a nack/reject/ack. A tag still in
// flight, or one this batch never saw delivered, ends the run; acks above it go out one by one.
// Nacks and rejects are not batched: the caller sends them at once, before any later flush, so
// no multiple ack can cover them, and reports them with settled().
//
// Delivery tags are per channel, counting from 1: reset() when the channel changes. Pure: no
// I/O; unit-tested in t/amqp/ack_batch_test.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace warren::amqp {

class AckBatch {
 public:
  struct Ack {
    uint64_t tag;
    bool multiple;
    bool operator==(const Ack&) const = default;
  };
  // Settled tags above a delivery still in flight are remembered one byte each: past this many
  // (a message stuck in retries for a long time) the batch stops tracking and acks one by one.
  static constexpr uint64_t kMaxWindow = 1 << 20;

  // A new channel: its tags start again at 1.
  void reset();
  // Every delivery the consumer got on the channel, in the order they came.
  void delivered(uint64_t tag);
  // Settled by ack: goes out with the next flush(). A tag acked twice is ignored.
  void ack(uint64_t tag);
  // Settled otherwise (basic.nack, basic.reject) and sent already by the caller.
  void settled(uint64_t tag);
  // The ack frames to send now, in this order; afterwards nothing is pending.
  [[nodiscard]] std::vector<Ack> flush();
  bool pending() const { return !acks_.empty(); }
  // Every tag at or below this one is settled and its frame returned by flush().
  uint64_t floor() const { return floor_; }

 private:
  enum class Tag : uint8_t { in_flight, acked, settled };
  // Tracked tags: (floor_, floor_ + window_.size()]; tags at or below floor_ are all settled
  // and sent. Tags above the window were never delivered (or are untracked when !tracking_).
  bool tracked(uint64_t tag) const { return tag > floor_ && tag - floor_ <= window_.size(); }
  void stop_tracking();

  uint64_t floor_ = 0;
  std::deque<Tag> window_;
  std::vector<uint64_t> acks_;  // acked since the last flush, in the order they came
  bool tracking_ = true;        // false after a gap or a huge window: single acks only
};

}  // namespace warren::amqp
