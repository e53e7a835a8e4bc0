-- Revokes one session of a principal (standalone): deletes it only if it is bound to that
-- principal.
-- KEYS[1]: the principal's index hash. ARGV[1]: session key prefix. ARGV[2]: the principal.
-- ARGV[3]: the session's handle, or '' to revoke all. ARGV[4]: a handle to keep when revoking
-- all ('' for none).
-- Returns how many sessions were deleted.
local revoked = 0
local function revoke(handle, entry)
  local key = ARGV[1] .. string.match(entry, '^[^:]*')
  redis.call('HDEL', KEYS[1], handle)
  if redis.call('HGET', key, '@p') == ARGV[2] then
    redis.call('DEL', key)
    revoked = revoked + 1
  end
end
if ARGV[3] ~= '' then
  local entry = redis.call('HGET', KEYS[1], ARGV[3])
  if entry then
    revoke(ARGV[3], entry)
  end
  return revoked
end
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  if entries[i] ~= ARGV[4] then
    revoke(entries[i], entries[i + 1])
  end
end
return revoked
