-- Reads a session and deletes it in one step: the last step of moving it to a new id (which in
-- Redis Cluster may live in another slot), once the copy under the new id exists. Writes to the
-- old id fail from here on.
-- KEYS[1]: the session hash. ARGV[1]: index key prefix when this script keeps the principal
-- index (standalone), '' otherwise. ARGV[2]: the session's handle.
-- Returns its fields (empty when there is none).
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  local principal = redis.call('HGET', KEYS[1], '@p')
  redis.call('DEL', KEYS[1])
  if principal and ARGV[1] ~= '' then
    redis.call('HDEL', ARGV[1] .. principal, ARGV[2])
  end
end
return fields
