// Micro-benchmarks of the publish request path pieces that need no broker: what a worker spends
// per request between libevent handing over the request and the frames going to the socket.
// Run: build/micro_bench (any Google Benchmark flag, e.g. --benchmark_filter=form).
#include <benchmark/benchmark.h>

#include <fmt/format.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "amqp/codec.h"
#include "handles.h"
#include "http/publish_request.h"

namespace {

using namespace warren;

const std::string kBody(100, 'x');

// What a PHP client of statelessd sends: a 100-byte message and a few properties.
const std::string kForm = "body=" + kBody +
                          "&delivery_mode=2&content_type=application%2Fjson&app_id=billing"
                          "&message_id=4f6c2b1e-9d1a-4c55-8a1f-0c3e6f1d2b7a&timestamp=1700000000";

void BM_parse_publish_path(benchmark::State& state) {
  for (auto _ : state) {
    auto p = parse_publish_path("/%2f/amq.default/billing.invoices");
    benchmark::DoNotOptimize(p);
  }
}
BENCHMARK(BM_parse_publish_path);

void BM_parse_basic_auth(benchmark::State& state) {
  for (auto _ : state) {
    auto who = parse_basic_auth("Basic Z3Vlc3Q6Z3Vlc3Q=", "/");
    benchmark::DoNotOptimize(who);
  }
}
BENCHMARK(BM_parse_basic_auth);

void BM_parse_form(benchmark::State& state) {
  for (auto _ : state) {
    std::map<std::string, std::string> fields;
    bool ok = parse_form(kForm, &fields);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(fields);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kForm.size()));
}
BENCHMARK(BM_parse_form);

// Every field statelessd knows, each with a valid value: one Message built per iteration.
void BM_apply_field_all(benchmark::State& state) {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"body", kBody},
      {"app_id", "billing"},
      {"content_encoding", "utf-8"},
      {"content_type", "application/json"},
      {"correlation_id", "c0ffee"},
      {"message_id", "4f6c2b1e-9d1a-4c55-8a1f-0c3e6f1d2b7a"},
      {"reply_to", "amq.rabbitmq.reply-to"},
      {"type", "invoice.created"},
      {"user_id", "guest"},
      {"delivery_mode", "2"},
      {"priority", "5"},
      {"timestamp", "1700000000"},
      {"expiration", "60000"},
      {"headers", R"({"x-tenant":"acme","x-attempt":1,"x-urgent":true})"},
      {"mandatory", "1"},
  };
  for (auto _ : state) {
    core::Message m;
    for (const auto& [key, value] : fields) {
      auto error = apply_field(m, key, value);
      benchmark::DoNotOptimize(error);
    }
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * fields.size()));
}
BENCHMARK(BM_apply_field_all);

void BM_parse_batch_ndjson_100(benchmark::State& state) {
  std::string body;
  for (int i = 0; i < 100; ++i)
    body += fmt::format(R"({{"routing_key":"q{}","body":"{}","delivery_mode":2,"app_id":"billing"}})"
                        "\n",
                        i, kBody);
  for (auto _ : state) {
    auto messages = batch_messages("amq.default", "application/x-ndjson", body);
    benchmark::DoNotOptimize(messages);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * 100));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_parse_batch_ndjson_100);

// Properties -> librabbitmq struct -> basic.publish, content header and body frames, as
// Channel::send_publish does (a fresh pool per message there too).
void BM_encode_message(benchmark::State& state) {
  amqp::Properties props;
  props.content_type = "application/json";
  props.delivery_mode = 2;
  props.app_id = "billing";
  props.message_id = "4f6c2b1e-9d1a-4c55-8a1f-0c3e6f1d2b7a";
  props.timestamp = 1700000000;
  if (state.range(0)) props.headers = nlohmann::json{{"x-tenant", "acme"}, {"x-attempt", 1}};
  const std::string queue = "billing.invoices";
  std::string out, error;
  for (auto _ : state) {
    auto pool = make_amqp_pool();
    amqp_basic_properties_t wire;
    amqp_basic_publish_t method{};
    method.routing_key = amqp::amqp_view(queue);
    bool ok = amqp::properties_to_amqp(props, pool.get(), &wire, &error) &&
              amqp::encode_method(out, 1, AMQP_BASIC_PUBLISH_METHOD, &method,
                                  amqp::kDefaultFrameMax, &error) &&
              amqp::encode_content(out, 1, wire, kBody, amqp::kDefaultFrameMax, &error);
    if (!ok) state.SkipWithError(error.c_str());
    benchmark::DoNotOptimize(out);
    out.clear();
  }
}
BENCHMARK(BM_encode_message)->Arg(0)->Arg(1)->ArgName("headers");

}  // namespace
