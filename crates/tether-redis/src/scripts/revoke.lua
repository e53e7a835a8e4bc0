-- Revokes sessions of a principal (standalone): deletes each only if it is bound to that
-- principal.
-- KEYS[1]: the principal's index hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua. ARGV[4]: session key prefix. ARGV[5]: the principal. ARGV[6]: the
-- session's handle, or '' to revoke all. ARGV[7]: a handle to keep when revoking all ('' for
-- none).
-- Returns how many sessions were deleted.
local revoked = 0
local function revoke(handle, entry)
  local id = string.match(entry, '^[^:]*')
  local key = ARGV[4] .. id
  redis.call('HDEL', KEYS[1], handle)
  if redis.call('HGET', key, '@p') == ARGV[5] then
    redis.call('DEL', key)
    deadline_drop(id, handle, ARGV[5])
    emit('revoked', handle, ARGV[5], '')
    revoked = revoked + 1
  end
end
if ARGV[6] ~= '' then
  local entry = redis.call('HGET', KEYS[1], ARGV[6])
  if entry then
    revoke(ARGV[6], entry)
  end
  return revoked
end
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  if entries[i] ~= ARGV[7] then
    revoke(entries[i], entries[i + 1])
  end
end
return revoked
