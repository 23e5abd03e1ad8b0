#include "options.h"

#include <unistd.h>

#include <fmt/format.h>

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

core::ForwarderOptions forwarder_options(const Config& config, const ForwarderConfig& forwarder,
                                         std::vector<core::ConsumeQueue> plan) {
  core::ForwarderOptions o;
  o.name = forwarder.name;
  o.broker = broker_options(config.broker);
  o.broker.vhost = forwarder.vhost;
  o.broker.connection_name = fmt::format("warren forwarder {} pid {}", forwarder.name, getpid());
  o.plan = std::move(plan);
  o.prefetch = forwarder.prefetch;
  o.retry = forwarder.retry;
  o.dead_letter_exchange = forwarder.dead_letter_exchange;
  o.queue_dead_letter_exchange =
      forwarder.declare.enabled && forwarder.declare.queue_arguments.count("x-dead-letter-exchange");
  o.queue = forwarder.queue;
  o.confirm_timeout = config.http.confirm_timeout;
  return o;
}

}  // namespace warren
