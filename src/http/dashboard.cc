#include "http/dashboard.h"

#include "http/request.h"
#include "http/server.h"

namespace warren {
namespace {

// One self-contained page: no build step, no outside assets. Rates come from the master
// (/stats "rates", averaged over its last seconds), so the figures are right from the first poll.
constexpr std::string_view kPage = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>warren</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline}
header h1{font-size:18px;margin:0}header span{opacity:.8}
main{padding:16px 20px;display:grid;gap:16px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}
.card{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
.card b{display:block;font-size:24px}.card small{color:#667}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px #0002}
h2{font-size:14px;margin:0 0 8px}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;font-variant-numeric:tabular-nums}
canvas{width:100%;height:160px}.ok{color:#17803d}.bad{color:#b42318}#error{color:#b42318}
</style></head><body>
<header><h1>warren</h1><span id="uptime">connecting…</span><span id="workers-count"></span><span id="error"></span></header>
<main>
<div class="cards">
 <div class="card"><small>requests/s</small><b id="rate-requests">–</b></div>
 <div class="card"><small>confirmed publishes/s</small><b id="rate-confirmed">–</b></div>
 <div class="card"><small>client errors/s (4xx)</small><b id="rate-4xx">–</b></div>
 <div class="card"><small>server errors/s (5xx)</small><b id="rate-5xx">–</b></div>
 <div class="card"><small>broker connections up</small><b id="connections-up">–</b></div>
 <div class="card"><small>event streams open</small><b id="streams-open">–</b></div>
</div>
<section><h2>last minutes: requests/s (blue), confirmed/s (green), errors/s (red)</h2><canvas id="chart" width="900" height="160"></canvas></section>
<section><h2>responses</h2><table id="responses"></table></section>
<section><h2>broker connections</h2><table id="connections"></table></section>
<section><h2>workers</h2><table id="workers"></table></section>
<section id="forwarders-section" hidden><h2>forwarders</h2><table id="forwarders"></table></section>
</main>
<script>
"use strict";
const history = [];  // {t, req, ok, err}
const fmt = n => n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
const sum = (o, pred) => Object.entries(o || {}).filter(([k]) => pred(k)).reduce((a, [, v]) => a + v, 0);
const el = id => document.getElementById(id);
function row(cells, head) {
  const tr = document.createElement("tr");
  for (const c of cells) { const td = document.createElement(head ? "th" : "td"); td.textContent = c; tr.appendChild(td); }
  return tr;
}
function table(id, head, rows) { const t = el(id); t.replaceChildren(row(head, true), ...rows.map(r => row(r))); }
function draw() {
  const c = el("chart"), g = c.getContext("2d"), w = c.width, h = c.height;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...history.map(p => Math.max(p.req, p.ok, p.err)));
  const line = (key, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    history.forEach((p, i) => { const x = w * i / 149, y = h - 4 - (h - 8) * p[key] / max; i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  };
  line("req", "#2563eb"); line("ok", "#17803d"); line("err", "#b42318");
  g.fillStyle = "#667"; g.fillText(fmt(max) + "/s", 4, 12);
}
async function poll() {
  try {
    const s = await (await fetch("/stats", {cache: "no-store"})).json();
    const r = s.rates || {};
    const req = (r.method_get || 0) + (r.method_post || 0) + (r.method_other || 0);
    const c4 = sum(r, k => /^response_4/.test(k)), c5 = sum(r, k => /^response_5/.test(k));
    el("rate-requests").textContent = fmt(req);
    el("rate-confirmed").textContent = fmt(r.publish_confirmed || 0);
    el("rate-4xx").textContent = fmt(c4);
    el("rate-5xx").textContent = fmt(c5);
    const conns = Object.entries(s.connections || {});
    el("connections-up").textContent = conns.filter(([, c]) => c.connected).length + " / " + conns.length;
    const ev = s.events || {};
    el("streams-open").textContent = (ev.streams_opened || 0) - (ev.streams_closed || 0);
    el("uptime").textContent = "up " + Math.round(s.uptime) + " s";
    el("workers-count").textContent = s.workers.length + " workers, ports " + (s.port || []).join(", ");
    el("error").textContent = "";
    table("responses", ["status", "count", "per second"],
      Object.entries(s.requests).filter(([k, v]) => k.startsWith("response.") && v > 0)
        .map(([k, v]) => [k.slice(9), v, fmt(r["response_" + k.slice(9)] || 0)]));
    table("connections", ["vhost:user", "state", "opened", "closed", "publishes", "waiting"],
      conns.map(([n, c]) => [n, c.connected ? "connected" : "down", c.connections.opened, c.connections.closed, c.publishes, c.queue_size]));
    table("workers", ["pid", "slot", "kind", "port", "GET", "POST", "RSS MiB"],
      s.workers.map(w => [w.pid, w.slot, w.kind, w.port, w.requests["method.GET"], w.requests["method.POST"], (w.memory_usage / 1048576).toFixed(1)]));
    const fw = Object.entries(s.forwarders || {});
    el("forwarders-section").hidden = fw.length === 0;
    if (fw.length) table("forwarders", ["name", ...Object.keys(fw[0][1])], fw.map(([n, f]) => [n, ...Object.values(f)]));
    history.push({t: Date.now(), req, ok: r.publish_confirmed || 0, err: c4 + c5});
    if (history.length > 150) history.shift();
    draw();
  } catch (e) {
    el("error").textContent = "stats unavailable: " + e.message;
  }
}
poll();
setInterval(poll, 2000);
</script></body></html>
)HTML";

}  // namespace

const RouteRules kDashboardRules{"GET", "the dashboard is read with GET", false, true};

void dashboard_routes(HttpServer& server) {
  server.route("/", [&server](Exchange* req, const std::string&) {
    if (!admit(server, req, kDashboardRules)) return;
    server.reply(req, 200, "text/html; charset=utf-8", kPage);
  });
}

}  // namespace warren
