-- wrk script of bench/daemon.py: POST pre-signed webhooks, one after the other.
--
-- wrk's Lua cannot compute an HMAC, so bench/daemonkit/payloads.py writes
-- every request ahead of the run as "path<TAB>X-Hub-Signature-256<TAB>body"
-- lines; the file is the script's first argument (wrk ... -s webhooks.lua URL -- FILE).
-- Each thread formats all requests once in init() and then only cycles
-- through them, so the generator spends nothing per request but the send.
-- The file must hold more requests than one run sends: a second pass would
-- repeat message ids, which the daemon drops as duplicates (the cheap path).
-- done() reports that as "wrapped" in a JSON line starting with "BENCH ".

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  requests_ = {}
  count = 0
  index = 0
  wrapped = 0
  for line in io.lines(args[1]) do
    local path, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    count = count + 1
    requests_[count] = wrk.format("POST", path,
      {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = signature}, body)
  end
end

function request()
  index = index + 1
  if index > count then
    index = 1
    wrapped = wrapped + 1
  end
  return requests_[index]
end

function done(summary, latency, requests)
  local wraps = 0
  for _, thread in ipairs(threads) do
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout, wraps))
end
