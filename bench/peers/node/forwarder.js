#!/usr/bin/env node
// The queue-to-HTTP forwarder a competent engineer would write in Node.js instead of warren's:
// the peer bench/forward_run measures warren's forwarder against (bench/README.md). It consumes
// a queue with a prefetch, POSTs each message's body to a backend URL, acks the message after a
// 2xx answer and nacks it back into the queue otherwise (a non-2xx answer, a timeout, an error).
//
//   node forwarder.js --queue QUEUE --url URL [--prefetch N] [--amqp-host HOST]
//                     [--amqp-port PORT] [--vhost VHOST] [--count N]
//
// The broker defaults to AMQP_HOST / AMQP_PORT, the login to AMQP_USER / AMQP_PASSWORD (guest).
// For the bench, it prints a JSON line at its first message and, with --count, one when it has
// acked that many.
'use strict';

const { parseArgs } = require('node:util');
const amqp = require('amqplib');
const { request } = require('undici');

const { values: args } = parseArgs({
  options: {
    queue: { type: 'string' },
    url: { type: 'string' },
    prefetch: { type: 'string', default: '64' },
    'amqp-host': { type: 'string', default: process.env.AMQP_HOST || '127.0.0.1' },
    'amqp-port': { type: 'string', default: process.env.AMQP_PORT || '5672' },
    vhost: { type: 'string', default: '/' },
    count: { type: 'string', default: '0' },
  },
});
if (!args.queue || !args.url) {
  console.error('usage: forwarder.js --queue QUEUE --url URL [--prefetch N] [--amqp-host HOST] ' +
                '[--amqp-port PORT] [--vhost VHOST] [--count N]');
  process.exit(2);
}
const kTimeoutMs = 10000;  // as warren's forwarder in bench/forward_run (backend.timeout: 10)
const report = (event, fields) => console.log(JSON.stringify({ event, ...fields, ms: performance.now() }));

async function main() {
  const connection = await amqp.connect({
    hostname: args['amqp-host'], port: Number(args['amqp-port']), vhost: args.vhost,
    username: process.env.AMQP_USER || 'guest', password: process.env.AMQP_PASSWORD || 'guest',
  });
  // Without its connection the forwarder has nothing to do: exit, and let a supervisor restart it.
  connection.on('close', () => { console.error('forwarder: the broker connection closed'); process.exit(1); });
  connection.on('error', (err) => console.error(`forwarder: ${err.message}`));
  const channel = await connection.createChannel();
  await channel.prefetch(Number(args.prefetch));

  let started = false;
  let acked = 0;
  await channel.consume(args.queue, async (message) => {
    if (message === null) {  // the broker cancelled the consumer (the queue was deleted)
      console.error(`forwarder: consumer on ${args.queue} cancelled`);
      process.exit(1);
    }
    if (!started) {
      started = true;
      report('first');
    }
    if (await forward(message)) {
      channel.ack(message);
      if (++acked === Number(args.count)) report('acked', { count: acked });
    } else {
      channel.nack(message, false, true);
    }
  });
}

// true once the backend answered 2xx
async function forward(message) {
  try {
    const { statusCode, body } = await request(args.url, {
      method: 'POST',
      body: message.content,
      headers: { 'content-type': message.properties.contentType || 'application/octet-stream' },
      headersTimeout: kTimeoutMs,
      bodyTimeout: kTimeoutMs,
    });
    await body.dump();
    if (statusCode >= 200 && statusCode < 300) return true;
    console.error(`forwarder: ${args.url} answered ${statusCode}`);
  } catch (err) {
    console.error(`forwarder: POST ${args.url}: ${err.message}`);
  }
  return false;
}

main().catch((err) => {
  console.error(`forwarder: ${err.message}`);
  process.exit(1);
});
