// A TLS client's settings: what amqp::ConnectionOptions carry and warren::Loop keys its one
// SSL_CTX on (loop.h), so it lives below both.
#pragma once

#include <string>

namespace warren {

struct TlsConfig {
  bool enabled = false;
  std::string ca, cert, key;
  bool verify = true;
  bool operator==(const TlsConfig&) const = default;
};

}  // namespace warren
