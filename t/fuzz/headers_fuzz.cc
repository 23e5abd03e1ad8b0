// The `headers` field: JSON text -> typed AMQP field table -> JSON again, and the whole
// property set through librabbitmq's encoder, as a publish does.
#include "amqp/codec.h"
#include "fuzz.h"
#include "handles.h"

using namespace warren;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto j = nlohmann::json::parse(fuzz::as_text(data, size), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return 0;
  auto pool = make_amqp_pool();
  amqp_table_t table{};
  std::string error;
  if (amqp::json_to_table(j, pool.get(), &table, &error)) {
    (void)amqp::table_to_json(table).dump();
    amqp::Properties p;
    p.headers = j;
    amqp_basic_properties_t raw{};
    auto pool2 = make_amqp_pool();
    if (amqp::properties_to_amqp(p, pool2.get(), &raw, &error)) {
      std::string out;
      (void)amqp::encode_content(out, 1, raw, "body", amqp::kDefaultFrameMax, &error);
      (void)amqp::properties_from_amqp(raw);
    }
  }
  return 0;
}
