-- The emulator's seeded world: organizations with their API keys, and their agents.
--
-- Plain data, no ngx: nginx loads it with require, tests and the launcher read it with
-- `dofile("emulator/lua/truedy_emulator/fixtures.lua")`. The first organization is the default
-- one: `truedy-emulator start` prints its key as TRUEDY_API_KEY.
--
-- Keys look like real ones (`truedy_` + 32 alphanumerics) so a client that checks the shape is
-- exercised for real; they are made up and grant nothing anywhere else.

return {
  organizations = {
    { name = "acme",   api_key = "truedy_9zwZPZ3nAuaOko3MP3ERhDaYHDZiUUXU" },
    { name = "globex", api_key = "truedy_ElhWh9wAymYrOgTQNhHzfzkWe5fOrqLD" },
  },

  -- Agent ids use both styles the docs show: `agt_...` and a bare UUID.
  agents = {
    -- The agent of the README example: active, two outbound numbers.
    { id = "agt_f9447372", org = "acme", status = "active", name = "Ava (reminders)",
      outbound_numbers = { "+12125551235", "+12125551236" },
      greeting = "Hi {{first_name}}, this is Ava from Acme." },
    -- Active but no outbound number: create_call without from_number gets
    -- 422 no_phone_number_configured.
    { id = "5b0c1f7e-8d2a-4c3b-9e4f-1a2b3c4d5e6f", org = "acme", status = "active",
      name = "Bo (no numbers)", outbound_numbers = {},
      greeting = "Hello, this is Bo." },
    -- A draft agent: calls are refused with 422 validation_error on agent_id.
    { id = "agt_0d5e7a21", org = "acme", status = "draft", name = "Cy (draft)",
      outbound_numbers = { "+12125551237" },
      greeting = "Hello from a draft." },
    -- The second organization's agent: invisible to acme's key and vice versa.
    { id = "agt_3c8b1e90", org = "globex", status = "active", name = "Dee (globex)",
      outbound_numbers = { "+14155550123" },
      greeting = "Hi {{first_name}}, Globex calling." },
  },

  -- Every destination number starting with this prefix ends `failed` instead of `ended`
  -- (no recording, no transcript). +1 555 000 xxxx is never a real subscriber line.
  failing_prefix = "+1555000",
  -- ... and every one starting with this prefix ends `cancelled` (at 5 s, never answered).
  cancelling_prefix = "+1555001",
}
