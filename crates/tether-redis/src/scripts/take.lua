-- Reads a session and deletes it in one step: the last step of moving it to a new id (which in
-- Redis Cluster may live in another slot), once the copy under the new id exists. Writes to the
-- old id fail from here on.
-- KEYS[1]: the session hash. Returns its fields (empty when there is none).
local fields = redis.call('HGETALL', KEYS[1])
if #fields > 0 then
  redis.call('DEL', KEYS[1])
end
return fields
