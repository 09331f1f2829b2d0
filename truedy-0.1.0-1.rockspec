rockspec_format = "3.0"
package = "truedy"
version = "0.1.0-1"

source = {
  url = "git+https://github.com/truedy/truedy-lua.git",
  tag = "v0.1.0",
}

description = {
  summary = "Place AI phone calls through the Truedy API from Lua (libcurl + lua-cjson)",
  detailed = [[
    truedy is a C module for Lua 5.1-5.4 and LuaJIT that places outbound calls with
    Truedy voice agents: parameters checked before sending, retries that can never
    dial a person twice (one idempotency key per call), structured errors, connection
    reuse on a libcurl multi engine, and safe defaults (TLS verification, no redirects,
    bounded timeouts and bodies).
  ]],
  homepage = "https://github.com/truedy/truedy-lua",
  license = "MIT",
  labels = { "http", "api", "telephony", "libcurl" },
}

dependencies = {
  "lua >= 5.1, < 5.5",
  "lua-cjson >= 2.1.0",
}

external_dependencies = {
  -- only the library is probed: on Debian the header lives under a multiarch
  -- directory that LuaRocks does not search, while the compiler does
  CURL = { library = "curl" },
  -- OpenSSL's libcrypto: HMAC-SHA256 and CRYPTO_memcmp for truedy.webhook
  -- (Debian: libssl-dev); its headers sit in the usual include directory
  OPENSSL = { header = "openssl/hmac.h", library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    truedy = {
      sources = {
        "csrc/truedy.c", "csrc/options.c", "csrc/client.c", "csrc/calls.c",
        "csrc/handle.c", "csrc/run.c", "csrc/engine.c", "csrc/transfer.c",
        "csrc/policy.c", "csrc/outcome.c", "csrc/errors.c", "csrc/params.c",
        "csrc/json.c", "csrc/util.c", "csrc/webhook.c",
      },
      defines = {},
      incdirs = { "csrc", "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
      libraries = { "curl", "crypto", "pthread", "m" },
    },
    ["truedy.follow"] = "lua/truedy/follow.lua",
    ["truedy.pager"] = "lua/truedy/pager.lua",
    ["truedy.batch"] = "lua/truedy/batch.lua",
    ["truedy.resty"] = "lua/truedy/resty.lua",
    ["truedy.resty.gate"] = "lua/truedy/resty/gate.lua",
    ["truedy.resty.thread"] = "lua/truedy/resty/thread.lua",
  },
  -- LuaLS annotations (*.d.lua), for editors: into the rock's own directory,
  -- <tree>/lib/luarocks/rocks-<lua>/truedy/<version>/types, never on package.path
  -- (`luarocks show --rock-dir truedy` prints where; README, "Editor support")
  copy_directories = { "types" },
}

test_dependencies = {
  "busted",
  "luasocket",
}

test = {
  type = "busted",
}
