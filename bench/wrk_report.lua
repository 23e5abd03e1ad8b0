-- Shared by bench/publish.lua and bench/management_publish.lua (loaded with dofile): Basic
-- credentials and one JSON line for bench/run in wrk's `done` hook.
local report = {}

-- bench/run's WARREN_BENCH_DELIVERY_MODE: 2 persistent (default), 1 transient.
report.delivery_mode = os.getenv("WARREN_BENCH_DELIVERY_MODE") or "2"

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function report.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for k = 1, 4 do
      local v = math.floor(n / 64 ^ (4 - k)) % 64
      out[#out + 1] = k <= chars and alphabet:sub(v + 1, v + 1) or "="
    end
  end
  return table.concat(out)
end

function report.basic_auth(user, password)
  return "Basic " .. report.base64(user .. ":" .. password)
end

-- Optional pacing for a target rate: each connection waits `pace_ms` on average before its next
-- request, so the rate is about connections * 1000 / (pace_ms + latency). 0 = as fast as
-- possible. The wait is drawn from 0..2*pace_ms: with one fixed wait the connections, answered
-- together by one multiple confirm, stay in step and arrive in bursts of 64, a load that the
-- paced reference (one message every 1/rate s) never sees (bench/README.md, "Where the half-load
-- milliseconds go").
function report.pace(ms)
  if ms and ms > 0 then
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    delay = function() return math.random(0, 2 * ms) end
  end
end

-- wrk's summary: requests, duration (us), errors; latency percentiles in microseconds.
function report.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,' ..
    '"max_ms":%.3f,"non2xx":%d,"socket_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect + e.read + e.write, e.timeout))
end

return report
