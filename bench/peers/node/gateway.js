#!/usr/bin/env node
// The HTTP-to-AMQP gateway a competent engineer would write in Node.js instead of warren: the
// peer bench/run measures warren against (bench/README.md). statelessd's route:
//   POST /<vhost>/<exchange>/<routing-key>   form body: body=<message>[&delivery_mode=1|2]
// with Basic auth, whose credentials open the broker connection. 204 once the broker confirmed
// the message, 503 if it nacked it or the connection failed, 400 on a bad request, 401 without
// credentials or when the broker refuses them.
//
//   node gateway.js --port PORT [--amqp-host HOST] [--amqp-port PORT] [--workers N]
//
// The broker defaults to AMQP_HOST / AMQP_PORT from the environment, else 127.0.0.1:5672.
// `cluster` runs one process per core; each opens, lazily, one connection and one confirm
// channel per (vhost, user) it is asked for.
'use strict';

const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');
const { parseArgs } = require('node:util');
const amqp = require('amqplib');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'amqp-host': { type: 'string', default: process.env.AMQP_HOST || '127.0.0.1' },
    'amqp-port': { type: 'string', default: process.env.AMQP_PORT || '5672' },
    workers: { type: 'string', default: String(os.availableParallelism()) },
  },
});
if (!args.port) {
  console.error('usage: gateway.js --port PORT [--amqp-host HOST] [--amqp-port PORT] [--workers N]');
  process.exit(2);
}
const kMaxBody = 1024 * 1024;

if (cluster.isPrimary) {
  for (let i = 0; i < Number(args.workers); i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    console.error(`gateway: worker ${worker.process.pid} exited (${signal || code})`);
  });
} else {
  http.createServer(handle).listen(Number(args.port), '127.0.0.1');
}

// (vhost, user, password) -> Promise of a confirm channel; dropped when its connection closes,
// so the next request opens a new one.
const channels = new Map();

function confirmChannel(vhost, user, password) {
  const key = JSON.stringify([vhost, user, password]);
  let channel = channels.get(key);
  if (!channel) {
    // forget only this channel: a newer one may have taken its place by the time it closes
    const forget = () => { if (channels.get(key) === channel) channels.delete(key); };
    channel = openChannel(vhost, user, password, forget);
    channels.set(key, channel);
    channel.catch(forget);
  }
  return channel;
}

async function openChannel(vhost, user, password, forget) {
  const connection = await amqp.connect({
    hostname: args['amqp-host'], port: Number(args['amqp-port']),
    username: user, password, vhost,
  });
  connection.on('error', (err) => console.error(`gateway: connection to ${vhost}: ${err.message}`));
  connection.on('close', forget);
  try {
    const channel = await connection.createConfirmChannel();
    // A channel error (say, an exchange that does not exist) closes the channel; its pending
    // publishes fail with it. Close the connection too, so the next request starts afresh.
    channel.on('error', (err) => console.error(`gateway: channel on ${vhost}: ${err.message}`));
    channel.on('close', () => { forget(); connection.close().catch(() => {}); });
    return channel;
  } catch (err) {
    connection.close().catch(() => {});
    throw err;
  }
}

function reply(res, status, error, detail) {
  if (status === 204) {
    res.writeHead(204).end();
    return;
  }
  const body = JSON.stringify({ error, detail });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function credentials(header) {
  const match = /^Basic (.+)$/i.exec(header || '');
  if (!match) return null;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function handle(req, res) {
  const parts = req.url.split('?')[0].split('/').slice(1);
  if (parts.length !== 3) return reply(res, 404, 'not_found', 'expected /<vhost>/<exchange>/<routing-key>');
  if (req.method !== 'POST') return reply(res, 405, 'method_not_allowed', 'POST only');
  let vhost, exchange, routingKey;
  try {
    [vhost, exchange, routingKey] = parts.map(decodeURIComponent);
  } catch {
    return reply(res, 400, 'bad_path', 'bad percent-encoding in the path');
  }
  const auth = credentials(req.headers.authorization);
  if (!auth) {
    res.setHeader('www-authenticate', 'Basic realm="gateway"');
    return reply(res, 401, 'unauthorized', 'Basic credentials required');
  }
  if (exchange === 'amq.default') exchange = '';

  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > kMaxBody) {
      reply(res, 413, 'too_large', `the body is over ${kMaxBody} bytes`);
      req.destroy();
    } else {
      chunks.push(chunk);
    }
  });
  req.on('end', () => {
    if (size > kMaxBody) return;
    const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
    const body = form.get('body');
    const mode = form.get('delivery_mode') || '2';
    if (body === null) return reply(res, 400, 'bad_body', 'the form has no body field');
    if (mode !== '1' && mode !== '2') return reply(res, 400, 'bad_body', 'delivery_mode must be 1 or 2');
    publish(res, auth, vhost, exchange, routingKey, Buffer.from(body, 'utf8'), Number(mode));
  });
}

async function publish(res, auth, vhost, exchange, routingKey, content, deliveryMode) {
  let channel;
  try {
    channel = await confirmChannel(vhost, auth.user, auth.password);
  } catch (err) {
    // amqplib reports refused credentials as ACCESS_REFUSED (403) in the message.
    if (/ACCESS_REFUSED|403/.test(err.message)) return reply(res, 401, 'unauthorized', err.message);
    return reply(res, 503, 'broker_unavailable', err.message);
  }
  try {
    channel.publish(exchange, routingKey, content, { deliveryMode }, (err) => {
      if (err) reply(res, 503, 'nacked', err.message);
      else reply(res, 204);
    });
  } catch (err) {  // the channel closed between the lookup and the publish
    reply(res, 503, 'broker_unavailable', err.message);
  }
}
