-- A minimal HTTP/1.1 POST over an nginx cosocket, for delivering webhooks: loopback http:// URLs
-- only (tests' receivers), one request per connection, the status line read, the rest ignored.
-- A cosocket yields while it waits, so a delivery never blocks its worker.

local http_post = {}

-- Splits a webhook URL. Returns { host, port, path, authority } or nil, reason.
-- Only http://127.0.0.1:PORT/... and http://localhost:PORT/... : the emulator talks to nothing else.
function http_post.parse_url(url)
  if type(url) ~= "string" then return nil, "url must be a string" end
  local host, port, path = url:match("^http://([%w%.]+):(%d+)(/[!-~]*)$")
  if not host then
    host, port = url:match("^http://([%w%.]+):(%d+)$")
    path = "/"
  end
  if not host then return nil, "url must look like http://127.0.0.1:PORT/path" end
  if host ~= "127.0.0.1" and host ~= "localhost" then
    return nil, "url must point at 127.0.0.1 or localhost: the emulator sends webhooks nowhere else"
  end
  port = tonumber(port)
  if port < 1 or port > 65535 then return nil, "url has no valid port" end
  return { host = "127.0.0.1", port = port, path = path, authority = host .. ":" .. port }
end

-- POSTs `body` with `headers` (name → value) to target (parse_url's table), waiting at most
-- `timeout` seconds for each step. Returns the status (number), or nil and an error word
-- ("timeout", "connection refused", ...).
function http_post.send(target, headers, body, timeout)
  local sock = ngx.socket.tcp()
  local ms = math.max(1, math.floor(timeout * 1000))
  sock:settimeouts(ms, ms, ms)
  local ok, err = sock:connect(target.host, target.port)
  if not ok then return nil, err end
  local lines = { "POST " .. target.path .. " HTTP/1.1", "Host: " .. target.authority,
    "Content-Length: " .. #body, "Connection: close" }
  for name, value in pairs(headers) do lines[#lines + 1] = name .. ": " .. value end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then
    sock:close()
    return nil, err
  end
  local line
  line, err = sock:receive("*l")
  sock:close()
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then return nil, "not an HTTP response" end
  return status
end

return http_post
