-- wrk script: statelessd-style publishes to warren, as PHP clients send them.
--   wrk -s bench/publish.lua http://127.0.0.1:PORT/%2f/amq.default/QUEUE -- [USER PASSWORD PACE_MS]
-- Each request POSTs a form with a 100-byte body, delivery_mode 2 (persistent; 1 with
-- WARREN_BENCH_DELIVERY_MODE=1), Basic auth;
-- warren answers 204 once the broker confirmed the message. `done` prints one WRK_JSON line.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "wrk_report.lua")

wrk.method = "POST"
wrk.body = "body=" .. string.rep("x", 100) .. "&delivery_mode=" .. report.delivery_mode
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

function init(args)
  wrk.headers["Authorization"] = report.basic_auth(args[1] or "guest", args[2] or "guest")
  report.pace(tonumber(args[3] or "0"))
end

done = report.done
