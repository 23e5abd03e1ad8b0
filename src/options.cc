#include "options.h"

namespace warren {

amqp::ConnectionOptions broker_options(const BrokerConfig& broker) {
  amqp::ConnectionOptions o;
  o.hosts = broker.hosts;
  if (o.hosts.empty()) o.hosts.push_back({"127.0.0.1", broker.port});
  o.vhost = broker.vhost;
  o.username = broker.username;
  o.password = broker.password;
  o.heartbeat = broker.heartbeat;
  o.connect_timeout = broker.connect_timeout;
  o.tls = broker.tls;
  return o;
}

core::PublishOptions publish_options(const Config& config) {
  core::PublishOptions o;
  o.broker = broker_options(config.broker);
  o.broker.high_water = config.broker.max_output_buffer;
  o.max_connections = config.broker.max_connections;
  o.confirm_timeout = config.http.confirm_timeout;
  o.max_in_flight = config.http.max_in_flight;
  o.idle_connection_timeout = config.http.idle_connection_timeout;
  return o;
}

core::RpcOptions rpc_options(const Config& config) {
  core::RpcOptions o;
  o.broker = broker_options(config.broker);
  o.max_pending_calls = config.rpc.max_pending_calls;
  o.max_timeout = config.rpc.max_timeout;
  return o;
}

}  // namespace warren
