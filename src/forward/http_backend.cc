#include "forward/http_backend.h"

#include "forward/backend_url.h"

namespace warren::forward {
namespace {

// A dead letter's x-warren-error carries at most this much of the backend's answer.
constexpr size_t kDeadLetterExcerpt = 200;

// One message: its translation, then one HTTP request per attempt.
class HttpJob final : public core::BackendJob {
 public:
  HttpJob(const Format& format, HttpClient& http, const BackendConfig& backend, Translation translation)
      : format_(format), http_(http), backend_(backend), translation_(std::move(translation)) {
    note = translation_.error;
    final_answer = translation_.final_answer;
    if (translation_.oslo) {
      unique_id = translation_.oslo->unique_id;
      heartbeat_interval = translation_.oslo->heartbeat;
    }
    if (translation_.kind == Translation::Kind::answer) {
      answered = backend_answer(translation_.answer, 0);
      invalid = translation_.invalid;
    }
  }
  ~HttpJob() override { http_.cancel(request_); }

  void start(Done done) override {
    // `this` outlives the request: the destructor cancels it, and then it never calls back.
    request_ = http_.start(backend_, translation_.request,
                           [this, done = std::move(done)](BackendResponse&& response, double seconds) {
                             request_ = 0;
                             last_ = std::move(response);
                             done(backend_answer(last_, seconds));
                           });
  }

  std::optional<core::Message> reply(const amqp::Delivery& message) const override {
    const bool answered_here = translation_.kind == Translation::Kind::answer;
    return format_.reply(message, translation_, answered_here ? translation_.answer : last_);
  }

  std::optional<core::Message> heartbeat() const override { return format_.heartbeat(translation_); }

 private:
  const Format& format_;
  HttpClient& http_;
  const BackendConfig& backend_;
  const Translation translation_;
  BackendResponse last_;  // the last attempt's response
  uint64_t request_ = 0;  // the attempt under way; 0: none
};

}  // namespace

core::BackendAnswer backend_answer(const BackendResponse& response, double seconds) {
  core::BackendAnswer a;
  a.status = response.status;
  a.error = response.error;
  if (response.status < 200 || response.status >= 300) a.excerpt = response.body.substr(0, kDeadLetterExcerpt);
  a.seconds = seconds;
  return a;
}

HttpBackend::HttpBackend(const ForwarderConfig& config, HttpClient& http)
    : config_(config), http_(http), format_(make_format(config)) {}

std::unique_ptr<core::BackendJob> HttpBackend::prepare(const amqp::Delivery& message) {
  return std::make_unique<HttpJob>(*format_, http_, config_.backend, format_->translate(message));
}

std::string HttpBackend::describe() const { return display_url(config_.backend.url); }

}  // namespace warren::forward
