-- Deletes a session only if it is bound to the given principal (Redis Cluster, where the
-- index lives in another slot).
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua. ARGV[4]: the principal. ARGV[5]: the session's handle. ARGV[6]:
-- its id.
-- Returns 1 when deleted, 0 otherwise.
if redis.call('HGET', KEYS[1], '@p') == ARGV[4] then
  redis.call('DEL', KEYS[1])
  deadline_drop(ARGV[6], ARGV[5], ARGV[4])
  emit('revoked', ARGV[5], ARGV[4], '')
  return 1
end
return 0
