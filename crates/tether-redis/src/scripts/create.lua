-- Stores a new session only if its key is free.
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua. KEYS[4]: the index hash of the
-- session's principal, when the session is bound and this script keeps the index (standalone);
-- absent otherwise.
-- ARGV[1..3]: see events.lua. ARGV[4]: deadline (Unix ms). ARGV[5]: keep the index until (Unix
-- ms). ARGV[6]: the session's handle. ARGV[7]: its id. ARGV[8]: sessions per principal at most
-- (0: no bound). ARGV[9]: session key prefix. ARGV[10]: the principal ('' for none). ARGV[11]:
-- the event to report ('created', or 'cycled' for the copy a cycle makes). ARGV[12]: the
-- handle before a cycle ('' for none). ARGV[13..]: field, value pairs.
-- Returns 1 when stored, 0 when the key was taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local n = #ARGV
local i = 13
while i <= n do
  -- unpack() is bounded by Lua's C stack: send at most 100 pairs per HSET.
  local last = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
local principal = ARGV[10] ~= '' and ARGV[10] or false
deadline_set(ARGV[7], ARGV[6], principal, ARGV[4], principal)
emit(ARGV[11], ARGV[6], principal, ARGV[12])
if KEYS[4] then
  index_add(KEYS[4], ARGV[6], ARGV[7], ARGV[3], ARGV[5])
  index_cap(KEYS[4], ARGV[9], ARGV[10], ARGV[7], tonumber(ARGV[8]))
end
return 1
