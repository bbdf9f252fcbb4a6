-- wrk script: POST one labelled diamond to /feedback (answered once it is on disk: the
-- store's group commit), then print the run's figures as one JSON line (as predict.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"carat":0.5,"cut":"Ideal","color":"E","clarity":"VS1","depth":61.5,"table":55.0,' ..
           '"price":1700}'

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
