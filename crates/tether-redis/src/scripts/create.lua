-- Stores a new session only if its key is free.
-- KEYS[1]: the session hash. KEYS[2]: the index hash of the session's principal, when the
-- session is bound and this script keeps the index (standalone); absent otherwise.
-- ARGV[1]: deadline (Unix ms). ARGV[2]: keep the index until (Unix ms). ARGV[3]: the session's
-- handle. ARGV[4]: its id. ARGV[5]: now (Unix ms). ARGV[6]: sessions per principal at most
-- (0: no bound). ARGV[7]: session key prefix. ARGV[8]: the principal ('' for none).
-- ARGV[9..]: field, value pairs.
-- Returns 1 when stored, 0 when the key was taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local n = #ARGV
local i = 9
while i <= n do
  -- unpack() is bounded by Lua's C stack: send at most 100 pairs per HSET.
  local last = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if KEYS[2] then
  index_add(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[2])
  index_cap(KEYS[2], ARGV[7], ARGV[8], ARGV[4], tonumber(ARGV[6]))
end
return 1
