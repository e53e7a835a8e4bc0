-- Deletes a session only if it is bound to the given principal (Redis Cluster, where the
-- index lives in another slot).
-- KEYS[1]: the session hash. ARGV[1]: the principal.
-- Returns 1 when deleted, 0 otherwise.
if redis.call('HGET', KEYS[1], '@p') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
