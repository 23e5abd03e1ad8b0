// What a forwarder (core/forwarder.h) calls for each message it consumes: the egress binding's
// side of forwarding. A Backend turns a delivery into a BackendJob; the forwarder starts the
// job's attempts, applies the delivery rules of core/forwarding.h to each BackendAnswer (ack,
// retry, dead-letter), publishes the job's reply and heartbeats, and settles the message. The
// backend holds no delivery rule: it only translates (forward/http_backend.h: a message -> an
// HTTP request through the forwarder's format, the response -> an answer and a reply).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "amqp/types.h"
#include "core/publisher.h"
#include "handles.h"

namespace warren::core {

// How one attempt ended, or the answer a backend gives without calling (a message it cannot
// send).
struct BackendAnswer {
  int status = 0;       // the backend's status (HTTP); 0: none came, `error` says why
  std::string error;    // why no status came: connection refused, timeout, ...
  std::string excerpt;  // the start of a non-2xx answer's body, for a dead letter's x-warren-error
  double seconds = 0;   // how long the backend took
};

// One consumed message in a backend's hands, made by Backend::prepare. The forwarder owns it
// until the message is settled or goes back to the queue; destroying it abandons any attempt
// under way (its callback never runs).
class BackendJob : NonCopyable {
 public:
  using Done = std::function<void(BackendAnswer&&)>;

  BackendJob() = default;
  virtual ~BackendJob() = default;

  // Starts one attempt; `done` runs exactly once, from the loop, never inside this call, unless
  // the job is destroyed first. Not called when `answered` is set.
  virtual void start(Done done) = 0;
  // The message answering the sender of `message` (the delivery the job was made from) after
  // the last answer (`answered`, or the last attempt's), once it is final; nullopt when nobody
  // waits for one. The forwarder publishes it mandatory, with confirms.
  virtual std::optional<Message> reply(const amqp::Delivery& message) const = 0;
  // A heartbeat for the sender while an attempt runs (every `heartbeat_interval` s); nullopt:
  // none to send.
  virtual std::optional<Message> heartbeat() const { return std::nullopt; }

  // Set by Backend::prepare:
  std::optional<BackendAnswer> answered;  // the answer without a call (no attempt is made)
  bool invalid = false;    // `answered` because the message cannot be read: counted as invalid
  std::string note;        // why it was answered so, for logs and dead-letter headers
  std::string unique_id;   // the sender's id for this request: a repeat is a duplicate ("" none)
  double heartbeat_interval = 0;  // > 0: heartbeat() this often while an attempt runs
  bool final_answer = false;  // a caller waits: its first answer, whatever it is, is replied and
                              // acked (no retry, no dead letter)
};

class Backend : NonCopyable {
 public:
  Backend() = default;
  virtual ~Backend() = default;

  // What the backend makes of `message`; called once per delivery.
  virtual std::unique_ptr<BackendJob> prepare(const amqp::Delivery& message) = 0;
  // Where the messages go, for logs (no credentials).
  virtual std::string describe() const = 0;
};

}  // namespace warren::core
