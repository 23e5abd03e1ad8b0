#include "amqp/ack_batch.h"

namespace warren::amqp {

void AckBatch::reset() {
  floor_ = 0;
  window_.clear();
  acks_.clear();
  tracking_ = true;
}

void AckBatch::stop_tracking() {
  // What is in acks_ still goes out, one frame each; nothing is ever covered by a multiple.
  tracking_ = false;
  window_.clear();
}

void AckBatch::delivered(uint64_t tag) {
  if (!tracking_) return;
  // The broker numbers a channel's deliveries 1, 2, 3...: anything else means a delivery went
  // past us (or a tag came twice), and a multiple ack could cover a message nobody handled.
  if (tag != floor_ + window_.size() + 1 || window_.size() >= kMaxWindow) return stop_tracking();
  window_.push_back(Tag::in_flight);
}

void AckBatch::ack(uint64_t tag) {
  if (tag == 0 || tag <= floor_) return;
  if (tracked(tag)) {
    Tag& t = window_[tag - floor_ - 1];
    if (t != Tag::in_flight) return;
    t = Tag::acked;
  }
  acks_.push_back(tag);
}

void AckBatch::settled(uint64_t tag) {
  if (tracked(tag)) window_[tag - floor_ - 1] = Tag::settled;
}

std::vector<AckBatch::Ack> AckBatch::flush() {
  std::vector<Ack> out;
  // The run of settled tags from the floor up: one ack, multiple, at its highest acked tag.
  // That tag must be one the broker still holds unacked (RabbitMQ refuses a multiple ack at a
  // tag it does not know); the settled tags after it move the floor all the same.
  uint64_t last_acked = 0;
  size_t run_acks = 0;
  while (!window_.empty() && window_.front() != Tag::in_flight) {
    ++floor_;
    if (window_.front() == Tag::acked) last_acked = floor_, ++run_acks;
    window_.pop_front();
  }
  if (run_acks > 0) out.push_back({last_acked, run_acks > 1});
  // Acks above something still in flight: one frame each, remembered as settled so that the
  // run can pass them once the messages below are done.
  for (uint64_t tag : acks_) {
    if (tag <= floor_) continue;
    if (tracked(tag)) window_[tag - floor_ - 1] = Tag::settled;
    out.push_back({tag, false});
  }
  acks_.clear();
  return out;
}

}  // namespace warren::amqp
