-- HMAC-SHA256 from OpenSSL's libcrypto through the LuaJIT FFI, for signing webhooks.
--
-- Deliberately independent of the truedy C module, whose `webhook.verify` is what the emulator's
-- webhooks test. nginx is linked against libcrypto, so its symbols are usually already in the
-- process (ffi.C); otherwise the library is loaded by name. The one-shot HMAC() is used: it is
-- not deprecated in OpenSSL 3 (HMAC_CTX_* is).

local ffi = require "ffi"

local hmac = {}

pcall(ffi.cdef, [[
  typedef struct evp_md_st EVP_MD;
  const EVP_MD *EVP_sha256(void);
  unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                      unsigned char *md, unsigned int *md_len);
]])

local function find_libcrypto()
  if pcall(function() return ffi.C.HMAC and ffi.C.EVP_sha256 end) then return ffi.C end
  for _, name in ipairs { "libcrypto.so.3", "crypto" } do
    local ok, lib = pcall(ffi.load, name)
    if ok and pcall(function() return lib.HMAC and lib.EVP_sha256 end) then return lib end
  end
  return nil
end

local crypto = find_libcrypto()
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

-- True when libcrypto was found (else sign() raises).
hmac.available = crypto ~= nil

local function hex(bytes, n)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = string.format("%02x", bytes[i]) end
  return table.concat(out)
end

-- The HMAC-SHA256 of `data` keyed with `key` (both byte strings), as 64 lower-case hex digits.
function hmac.sha256_hex(key, data)
  if not crypto then error("HMAC-SHA256 unavailable: libcrypto not found") end
  if #key > 0x7fffffff then error("HMAC key too long") end
  local out = crypto.HMAC(crypto.EVP_sha256(), key, #key, data, #data, md, md_len)
  if out == nil then error("HMAC-SHA256 failed") end
  return hex(md, md_len[0])
end

return hmac
