-- wrk script: count responses that are exactly 200 + the handler's body ("hello world\n").
-- Prints "CHECK good=N bad=N dur_us=N <wrk error counts>" at the end. Override the body with env WRK_EXPECT_BODY.
expected = os.getenv("WRK_EXPECT_BODY") or "hello world\n"
good = 0
bad = 0
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status == 200 and body == expected then
    good = good + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local g, b = 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format("CHECK good=%d bad=%d dur_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    g, b, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
