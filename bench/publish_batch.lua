-- wrk script: warren's batch publish, B messages per request (application/x-ndjson), each the
-- same 100-byte message as bench/publish.lua.
--   wrk -s bench/publish_batch.lua http://127.0.0.1:PORT/%2f/amq.default -- QUEUE B [USER PASSWORD]
-- warren answers 200 with one status per message once all are confirmed; a batch puts B
-- messages in flight per HTTP connection. `done` prints one WRK_JSON line (rps = requests/s).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local report = dofile(here .. "wrk_report.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"

function init(args)
  local queue, count = args[1] or "warren-bench", tonumber(args[2] or "16")
  local line = '{"routing_key":"' .. queue .. '","body":"' .. string.rep("x", 100) ..
               '","delivery_mode":' .. report.delivery_mode .. '}\n'
  wrk.body = string.rep(line, count)
  wrk.headers["Authorization"] = report.basic_auth(args[3] or "guest", args[4] or "guest")
end

done = report.done
