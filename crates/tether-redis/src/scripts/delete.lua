-- Deletes a session, and its entry in the principal index when this script keeps the index.
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua. ARGV[4]: index key prefix (standalone), '' otherwise (Cluster:
-- the entry is dropped when the principal's sessions are next listed). ARGV[5]: the session's
-- handle. ARGV[6]: its id.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local principal = redis.call('HGET', KEYS[1], '@p')
redis.call('DEL', KEYS[1])
deadline_drop(ARGV[6], ARGV[5], principal)
emit('deleted', ARGV[5], principal, '')
if principal and ARGV[4] ~= '' then
  redis.call('HDEL', ARGV[4] .. principal, ARGV[5])
end
return 1
