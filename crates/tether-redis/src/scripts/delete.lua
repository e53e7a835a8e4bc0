-- Deletes a session, and its entry in the principal index when this script keeps the index.
-- KEYS[1]: the session hash. ARGV[1]: index key prefix (standalone), '' otherwise (Cluster:
-- the entry is dropped when the principal's sessions are next listed). ARGV[2]: the session's
-- handle.
local principal = redis.call('HGET', KEYS[1], '@p')
redis.call('DEL', KEYS[1])
if principal and ARGV[1] ~= '' then
  redis.call('HDEL', ARGV[1] .. principal, ARGV[2])
end
return 1
