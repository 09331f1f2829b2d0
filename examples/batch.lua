-- Call every contact of a CSV file, a few at a time, and write what happened as CSV.
--
--   lua5.4 examples/batch.lua [CONTACTS.csv | -] [BATCH_ID] > results.csv
--
--   CONTACTS.csv   a header line, then one contact a line: phone_number (required), agent_id
--                  (optional, else TRUEDY_AGENT_ID), key (optional: the contact's own
--                  idempotency key); every other column is a variable of the call (first_name,
--                  order_id, ...).  Default: examples/contacts.csv; "-" reads standard input.
--   BATCH_ID       names the batch (default: the file's name without .csv; "stdin" for -).
--   TRUEDY_API_KEY, TRUEDY_BASE_URL, TRUEDY_AGENT_ID   as for examples/create_call.lua.
--
-- Out, on stdout: row,phone_number,call_id,status,error, one line a contact, in input order,
-- each as soon as the rows before it are done (a refused or failed contact has its error and
-- no call id; the exit status is 0 whenever every contact got its line).  While it runs,
-- stderr shows a progress line when it is a terminal (TRUEDY_PROGRESS=1 forces it, one line
-- per contact).
--
-- Safe to run again: each contact's call carries the idempotency key BATCH_ID:ROW (or the
-- contact's own key), so running the same command again, after a crash, a Ctrl-C or a lost
-- connection, gets the calls already placed back (the same call ids) and places only the
-- others.  No one is dialled twice:
--
--   lua5.4 examples/batch.lua leads.csv spring-2026 > first.csv     # stopped halfway
--   lua5.4 examples/batch.lua leads.csv spring-2026 > results.csv   # same ids, the rest placed
--
-- That holds for the same lines in the same order (appending lines is fine), within the API's
-- key lifetime (minutes to days, depending on the backend).  Inserting, removing or
-- reordering lines moves every key after the change; a changed line is a new request (the API
-- compares the body): either would dial someone again.  For a file that may be edited between
-- runs, give each contact its own `key` column.
local truedy = require "truedy"

local function env(name)
  local value = os.getenv(name)
  if value == nil or value == "" then return nil end
  return value
end

local function fail(message)
  io.stderr:write("batch.lua: ", message, "\n")
  os.exit(2)
end

-- CSV (RFC 4180): quoted fields may hold commas, doubled quotes and line breaks.
local function parse_csv(text)
  text = text:gsub("^\239\187\191", "") -- a UTF-8 byte order mark
  local records, record, field = {}, {}, {}
  local i, n, quoted = 1, #text, false
  while i <= n do
    local c = text:sub(i, i)
    if quoted then
      if c == '"' and text:sub(i + 1, i + 1) == '"' then
        field[#field + 1] = '"'
        i = i + 1
      elseif c == '"' then
        quoted = false
      else
        field[#field + 1] = c
      end
    elseif c == '"' then
      quoted = true
    elseif c == "," then
      record[#record + 1] = table.concat(field)
      field = {}
    elseif c == "\n" or c == "\r" then
      if c == "\r" and text:sub(i + 1, i + 1) == "\n" then i = i + 1 end
      record[#record + 1] = table.concat(field)
      records[#records + 1] = record
      record, field = {}, {}
    else
      field[#field + 1] = c
    end
    i = i + 1
  end
  if quoted then return nil, "a quoted field is never closed" end
  if #field > 0 or #record > 0 then
    record[#record + 1] = table.concat(field)
    records[#records + 1] = record
  end
  return records
end

local function csv_field(value)
  value = tostring(value or "")
  if value:find('[,"\r\n]') then value = '"' .. value:gsub('"', '""') .. '"' end
  return value
end

-- The contacts: { phone, row = { params = ..., idempotency_key = ... } } for each line.
local function read_contacts(text, default_agent)
  local records, err = parse_csv(text)
  if not records then fail(err) end
  local header = table.remove(records, 1) or {}
  local column = {}
  for k, name in ipairs(header) do column[name:match("^%s*(.-)%s*$")] = k end
  if not column.phone_number then fail("the CSV has no phone_number column") end
  local contacts = {}
  for _, record in ipairs(records) do
    if not (#record == 1 and record[1] == "") then -- skip blank lines
      local params = { phone_number = record[column.phone_number], variables = {} }
      local key
      for name, k in pairs(column) do
        local value = record[k]
        if value ~= nil and value ~= "" and name ~= "phone_number" then
          if name == "agent_id" then params.agent_id = value
          elseif name == "key" then key = value
          else params.variables[name] = value end
        end
      end
      params.agent_id = params.agent_id or default_agent
      if next(params.variables) == nil then params.variables = nil end
      contacts[#contacts + 1] = { phone = params.phone_number, row = { params = params, idempotency_key = key } }
    end
  end
  return contacts
end

local function stderr_is_terminal()
  local ok = os.execute("test -t 2")
  return ok == true or ok == 0 -- Lua 5.2+ / 5.1
end

local path = arg[1] or ((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/contacts.csv")
local batch_id = arg[2] or (path == "-" and "stdin" or path:match("([^/]*)$"):gsub("%.[Cc][Ss][Vv]$", ""))
local text
if path == "-" then
  text = io.read("*a")
else
  local file, open_err = io.open(path, "rb")
  if not file then fail(open_err) end
  text = file:read("*a")
  file:close()
end

local agent_id = env("TRUEDY_AGENT_ID")
local contacts = read_contacts(text, agent_id)
if not agent_id then
  for _, c in ipairs(contacts) do
    if not c.row.params.agent_id then fail("set TRUEDY_AGENT_ID, or give every contact an agent_id") end
  end
end

local client, client_err = truedy.new()
if not client then fail(tostring(client_err)) end

local rows = {}
for i, c in ipairs(contacts) do rows[i] = c.row end

local terminal = stderr_is_terminal()
local show_progress = terminal or env("TRUEDY_PROGRESS") == "1"

-- Lines go out in input order as soon as every row before them is done, so an interrupted
-- run leaves a valid CSV of its first rows (and the rerun gives the same lines again).
local finished, next_line = {}, 1
local placed, failed = 0, 0
print("row,phone_number,call_id,status,error")
local function write_ready_lines()
  while finished[next_line] do
    local r = finished[next_line]
    local call = r.res and r.res.data or {}
    print(table.concat({ next_line, csv_field(contacts[next_line].phone), csv_field(call.id),
      csv_field(call.status), csv_field(r.err and tostring(r.err)) }, ","))
    finished[next_line] = nil
    next_line = next_line + 1
  end
  io.stdout:flush()
end

client:create_calls(rows, {
  batch_id = batch_id,
  concurrency = 4,
  on_result = function(i, res, err)
    if res then placed = placed + 1 else failed = failed + 1 end
    finished[i] = { res = res, err = err }
    write_ready_lines()
  end,
  on_progress = function(done, total)
    if show_progress then
      io.stderr:write(("%s%d/%d done: %d placed, %d failed%s"):format(terminal and "\r" or "", done, total,
        placed, failed, terminal and "" or "\n"))
    end
  end,
})
if show_progress and terminal then io.stderr:write("\n") end
