-- Stores a new session only if its key is free.
-- KEYS[1]: the session hash. ARGV[1]: deadline (Unix ms). ARGV[2..]: field, value pairs.
-- Returns 1 when stored, 0 when the key was taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local n = #ARGV
local i = 2
while i <= n do
  -- unpack() is bounded by Lua's C stack: send at most 100 pairs per HSET.
  local last = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
