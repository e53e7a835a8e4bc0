-- Reads a session and deletes it in one step: the first half of moving it to a new id, which in
-- Redis Cluster may live in another slot. Writes to the old id fail from here on.
-- KEYS[1]: the session hash. Returns its fields (empty when there is none).
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  redis.call('DEL', KEYS[1])
end
return fields
