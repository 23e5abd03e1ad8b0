// Config → each layer's own options, made once per worker (twemproxy's
// conf_pool_each_transform): amqp/ and core/ never see Config, only what they use.
#pragma once

#include "amqp/types.h"
#include "config.h"
#include "core/forwarder.h"
#include "core/publisher.h"
#include "core/rpc.h"

namespace warren {

// Hosts, TLS, heartbeat and the service identity (broker.username) of every broker link.
amqp::ConnectionOptions broker_options(const BrokerConfig& broker);
core::PublishOptions publish_options(const Config& config);
core::RpcOptions rpc_options(const Config& config);
// `forwarder` (an entry of config.forwarders) consuming `plan` (its format's).
core::ForwarderOptions forwarder_options(const Config& config, const ForwarderConfig& forwarder,
                                         std::vector<core::ConsumeQueue> plan);

}  // namespace warren
