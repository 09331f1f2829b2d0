-- wrk script of bench/resty: POST /dial with a create_call body; at the end one line the
-- harness reads: "requests N duration_us D connect E read E write E status E timeout E".
-- luacheck: globals wrk done
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"agent_id":"agt_f9447372","phone_number":"+12125551234"}'

function done(summary)
  local e = summary.errors
  io.write(string.format("requests %d duration_us %d connect %d read %d write %d status %d timeout %d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout))
end
