-- Reads a session and deletes it in one step: the last step of moving it to a new id (which in
-- Redis Cluster may live in another slot), once the copy under the new id exists. Writes to the
-- old id fail from here on. No event: the copy reported the move.
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua. ARGV[4]: index key prefix when this script keeps the principal
-- index (standalone), '' otherwise. ARGV[5]: the session's handle. ARGV[6]: its id.
-- Returns its fields (empty when there is none).
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  local principal = redis.call('HGET', KEYS[1], '@p')
  redis.call('DEL', KEYS[1])
  deadline_drop(ARGV[6], ARGV[5], principal)
  if principal and ARGV[4] ~= '' then
    redis.call('HDEL', ARGV[4] .. principal, ARGV[5])
  end
end
return fields
