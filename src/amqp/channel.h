// One AMQP channel: synchronous methods in a FIFO awaiting their -ok, publisher confirms
// (delivery tags, ack/nack with multiple, basic.return correlation), and consumers
// (deliveries reassembled from method+header+body frames, ack/nack/reject, broker cancel).
//
// Every callback runs exactly once, from the event loop, never from inside the call that
// registered it. A channel closed by the broker (404, 403, ...) fails everything pending on
// it with channel_error and that code; other channels on the connection carry on.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "amqp/codec.h"
#include "amqp/connection.h"
#include "amqp/types.h"
#include "handles.h"

namespace warren::amqp {

class Channel : public std::enable_shared_from_this<Channel>, NonCopyable {
 public:
  enum class State { pending, open, closing, closed };

  Channel(Connection* conn, uint16_t id, bool confirms);
  ~Channel();

  uint16_t id() const { return id_; }
  State state() const { return state_; }
  bool is_open() const { return state_ == State::pending || state_ == State::open; }
  // Why the channel closed (channel_error with the broker's code, or connection_lost).
  const Result& close_reason() const { return close_reason_; }
  // Called once when the channel ends for any reason other than close() by the owner.
  void set_close_callback(ResultCallback cb) { on_close_ = std::move(cb); }

  // Deadline for every synchronous call made from now on (0: none, the default). A call that
  // passes it fails with timeout; its late reply is still consumed in order and dropped.
  void set_call_timeout(double seconds) { call_timeout_ = seconds; }

  // Any synchronous method (its struct as in amqp_framing.h, encoded at once, so its pointers
  // need only live through the call). cb gets the -ok, or the error that closed the channel.
  void call(amqp_method_number_t id, void* decoded, MethodCallback cb);

  void declare_exchange(const std::string& name, const std::string& type, bool durable,
                        bool auto_delete, const nlohmann::json& arguments, ResultCallback cb);
  // An empty name asks the broker to name the queue; cb gets the name.
  void declare_queue(const std::string& name, bool durable, bool exclusive, bool auto_delete,
                     const nlohmann::json& arguments, QueueCallback cb);
  void bind_queue(const std::string& queue, const std::string& exchange,
                  const std::string& routing_key, const nlohmann::json& arguments,
                  ResultCallback cb);
  void delete_queue(const std::string& queue, ResultCallback cb);
  void qos(uint16_t prefetch, ResultCallback cb);

  // Publishes with confirms (the channel must have been opened with confirms). cb gets ok,
  // nacked, returned (mandatory and unroutable), channel_error, connection_lost, invalid, or
  // timeout once `timeout` seconds pass (0: no deadline). While the connection is connecting
  // or blocked the message waits here, unsent, until then or its deadline. One mandatory
  // message at a time awaits its confirm (see may_send): one broker round trip each, on this
  // channel; others keep their order behind a waiting one. `alone`: sent only when nothing else
  // awaits a confirm here, and nothing else is sent until it is settled, so that a channel error
  // can only be its own (a message sent again after it was displaced, see broker_closed).
  // Sent at once, the message is encoded from the arguments and nothing of it is copied.
  void publish(const std::string& exchange, const std::string& routing_key, bool mandatory,
               const Properties& properties, std::string_view body, double timeout,
               ResultCallback cb, bool alone = false);
  // Publishes waiting to be sent plus those awaiting their confirm.
  size_t in_flight() const { return waiting_.size() + unconfirmed_.size(); }

  // basic.qos(prefetch) when prefetch > 0, then basic.consume. on_started gets the consumer
  // tag; after that, on_delivery per message and on_end exactly once when the consumer ends:
  // ok after cancel(), channel_error (code 0 when the broker cancelled it, e.g. queue deleted),
  // or connection_lost.
  void consume(const std::string& queue, uint16_t prefetch, bool no_ack, bool exclusive,
               DeliveryCallback on_delivery, ResultCallback on_end, ConsumeCallback on_started);
  void cancel(const std::string& consumer_tag, ResultCallback cb);
  void ack(uint64_t delivery_tag, bool multiple = false);
  void nack(uint64_t delivery_tag, bool multiple, bool requeue);
  void reject(uint64_t delivery_tag, bool requeue);

  // channel.close; pending work fails with channel_error 200. cb (may be empty) after close-ok.
  void close(ResultCallback cb = {});

 private:
  friend class Connection;

  struct PendingCall {
    amqp_method_number_t reply;
    MethodCallback cb;
    Clock::time_point deadline = Clock::time_point::max();
  };
  // A message waiting to be sent (connecting, blocked, behind a mandatory or lone one).
  struct Publish {
    std::string exchange, routing_key;
    bool mandatory = false;
    Properties properties;
    std::string body;
    Clock::time_point deadline;  // max() when none
    ResultCallback cb;
    bool alone = false;
  };
  // A message sent, until the broker settles its tag: what a confirm, a return or a channel
  // error needs of it. Its content is the broker's now: a return is tied to it by tag.
  struct Sent {
    std::string exchange;  // fail_publishes_on_close: were they all for one exchange?
    Clock::time_point deadline;
    ResultCallback cb;  // empty once answered (timed out): the entry waits for its confirm
    std::optional<Result> returned;  // basic.return seen; the confirm completes it
  };
  struct Consumer {
    DeliveryCallback on_delivery;
    ResultCallback on_end;
  };
  // A basic.deliver or basic.return being reassembled from its frames.
  struct Incoming {
    // Spelt out: clang does not see a nested struct with member initializers as default
    // constructible inside its enclosing class, and std::optional::emplace() needs it (make fuzz).
    Incoming() {}
    bool is_return = false;
    int reply_code = 0;
    std::string reply_text;
    Delivery delivery;
    bool have_header = false;
    uint64_t body_size = 0;
  };

  // from Connection
  void connection_open();            // send channel.open (+confirm.select) and what waited
  void connection_unblocked() { flush_waiting(); }
  void connection_lost(const Result& why);
  [[nodiscard]] bool handle_frame(const amqp_frame_t& frame, std::string* error);
  void detach();

  [[nodiscard]] bool handle_method(const amqp_method_t& m, std::string* error);
  // What the broker sends unasked, one handler a method (the table in handle_method).
  void start_delivery(const amqp_basic_deliver_t& d);
  void start_return(const amqp_basic_return_t& r);
  void handle_ack(const amqp_basic_ack_t& a);
  void handle_nack(const amqp_basic_nack_t& n);
  void handle_broker_cancel(const amqp_basic_cancel_t& c);
  void handle_close_ok(const amqp_channel_close_ok_t&);
  void handle_flow(const amqp_channel_flow_t& f);
  [[nodiscard]] bool handle_reply(const amqp_method_t& m, std::string* error);
  void handle_confirm(uint64_t tag, bool multiple, bool acked);
  void handle_return_complete(Incoming&& in);
  void handle_delivery_complete(Incoming&& in);
  void broker_closed(const amqp_channel_close_t& close);
  void fail_all(const Result& why);  // everything pending fails; consumers end
  void enqueue_call(amqp_method_number_t id, void* decoded, MethodCallback cb);
  // Encodes and sends it, or fails it (invalid) on the loop: false when it was not sent.
  bool send_publish(const std::string& exchange, const std::string& routing_key, bool mandatory,
                    const Properties& properties, std::string_view body, Clock::time_point deadline,
                    ResultCallback& cb, bool alone);
  void flush_waiting();
  void arm_deadline();
  static void on_deadline(evutil_socket_t, short, void* arg);
  void expire(Clock::time_point now);
  void fail_later(ResultCallback cb, Result r);
  void send_method(amqp_method_number_t id, void* decoded);
  void finish_close(const Result& why);
  [[nodiscard]] bool can_publish() const;
  // Only a mandatory message can come back (basic.return), and one at a time awaits its
  // confirm: a return then names exactly one message, whatever the confirms around it. A
  // message sent alone has the channel to itself until it is settled.
  [[nodiscard]] bool may_send(bool mandatory, bool alone) const {
    return can_publish() && alone_tag_ == 0 && (!alone || unconfirmed_.empty()) &&
           (!mandatory || mandatory_tag_ == 0);
  }
  // What a channel error means for each message it ends (broker_closed).
  void fail_publishes_on_close(const Result& why);

  Connection* conn_;
  Loop& loop_;
  uint16_t id_;
  bool confirms_;
  State state_ = State::pending;
  Result close_reason_;
  ResultCallback on_close_;
  double call_timeout_ = 0;
  ResultCallback on_closed_by_owner_;

  std::string held_;  // frames encoded before the connection was open
  std::deque<PendingCall> calls_;
  std::deque<Publish> waiting_;               // not yet sent (connecting / blocked)
  // By delivery tag, until the broker settles the tag, even after the publish timed out: a
  // basic.return that comes late belongs to that message still.
  std::map<uint64_t, Sent> unconfirmed_;
  uint64_t mandatory_tag_ = 0;  // the mandatory message awaiting its confirm, 0: none
  uint64_t alone_tag_ = 0;      // the message sent alone awaiting its confirm, 0: none
  uint64_t next_tag_ = 1;
  EventPtr deadline_timer_;
  Clock::time_point armed_for_ = Clock::time_point::max();
  std::map<std::string, Consumer> consumers_;
  std::optional<Incoming> incoming_;
};

}  // namespace warren::amqp
