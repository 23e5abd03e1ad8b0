#include "forward/http_backend.h"

#include "forward/backend_url.h"
#include "log.h"

namespace warren::forward {
namespace {

// A dead letter's x-warren-error carries at most this much of the backend's answer.
constexpr size_t kDeadLetterExcerpt = 200;

// One message: its translation, then one HTTP request per attempt.
class HttpJob final : public core::BackendJob {
 public:
  HttpJob(const Format& format, HttpClient& http, const BackendConfig& backend, Translation translation,
          VcdApi* vcd_api, ForwarderCounters& counters)
      : format_(format),
        http_(http),
        backend_(backend),
        translation_(std::move(translation)),
        vcd_api_(vcd_api),
        counters_(counters) {
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
    if (translation_.vcd_checks && !checked_) return check_then_send(std::move(done));
    send(std::move(done));
  }

  std::optional<core::Message> reply(const amqp::Delivery& message) const override {
    const bool answered_here = translation_.kind == Translation::Kind::answer;
    return format_.reply(message, translation_, answered_here ? translation_.answer : last_);
  }

  std::optional<core::Message> heartbeat() const override { return format_.heartbeat(translation_); }

 private:
  // vCD's own checks first (once per message, not per attempt). A refusal is a 403 like the
  // format's own; an API that cannot answer is a 503 answered at once: vCD waits for a reply,
  // and the checks are not the backend's to retry.
  void check_then_send(Done done) {
    auto verdict = [this, alive = life_.watch(), done = std::move(done)](VcdVerdict v, std::string why) mutable {
      if (alive.expired()) return;
      if (v == VcdVerdict::pass) {
        checked_ = true;
        return send(std::move(done));
      }
      if (v == VcdVerdict::refused) {
        ++counters_.vcd_refused;
        last_ = vcd_error_response(403, "ACCESS_TO_RESOURCE_IS_FORBIDDEN", why);
      } else {
        ++counters_.vcd_api_unavailable;
        log_debug("vcd request {}: answered 503: {}", translation_.request_id, why);
        last_ = vcd_error_response(503, "SERVICE_UNAVAILABLE", why);
        final_answer = true;
      }
      note = why;
      done(backend_answer(last_, 0));
    };
    if (!vcd_api_) return http_.loop().defer([verdict = std::move(verdict)]() mutable {
      verdict(VcdVerdict::unavailable, "no vcd.api is configured");
    });
    vcd_api_->check(*translation_.vcd_checks, std::move(verdict));
  }

  void send(Done done) {
    // `this` outlives the request: the destructor cancels it, and then it never calls back.
    request_ = http_.start(backend_, translation_.request,
                           [this, done = std::move(done)](BackendResponse&& response, double seconds) {
                             request_ = 0;
                             last_ = std::move(response);
                             done(backend_answer(last_, seconds));
                           });
  }

  const Format& format_;
  HttpClient& http_;
  const BackendConfig& backend_;
  const Translation translation_;
  BackendResponse last_;  // the last attempt's response
  uint64_t request_ = 0;  // the attempt under way; 0: none
  VcdApi* vcd_api_;       // null: no vcd.api
  ForwarderCounters& counters_;
  bool checked_ = false;  // vCD's checks passed
  LifeToken life_;        // a check's answer finds the job gone (message requeued)
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

HttpBackend::HttpBackend(const ForwarderConfig& config, HttpClient& http, ForwarderCounters& counters)
    : config_(config), http_(http), format_(make_format(config)), counters_(counters) {
  if (config.format != ForwarderFormat::vcd || config.vcd.api.url.empty()) return;
  vcd_api_ = std::make_unique<VcdApi>(http.loop(), http, config.vcd.api);
  if (config.vcd.deploy == "auto") auto_deploy_ = std::make_unique<VcdAutoDeploy>(http.loop(), *vcd_api_, config);
}

HttpBackend::~HttpBackend() = default;

void HttpBackend::start() {
  if (auto_deploy_) auto_deploy_->start();
}

std::unique_ptr<core::BackendJob> HttpBackend::prepare(const amqp::Delivery& message) {
  return std::make_unique<HttpJob>(*format_, http_, config_.backend, format_->translate(message), vcd_api_.get(),
                                   counters_);
}

std::string HttpBackend::describe() const { return display_url(config_.backend.url); }

}  // namespace warren::forward
