-- Applies one request's delta to an existing session; never creates one.
-- KEYS[1]: the session hash.
-- ARGV[1]: deadline (Unix ms). ARGV[2]: the metadata after the creation time,
-- 'deadline:idle:absolute'. ARGV[3]: '1' to clear every data field first. ARGV[4]: number R of
-- data fields to delete, which follow in ARGV[5..4+R]; then data field, value pairs to set.
-- Returns 1 when applied, 0 when the session does not exist (deleted or expired).
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return 0
end
if ARGV[3] == '1' then
  local doomed = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    -- Data fields start with ':' (byte 58); the metadata field with '@'.
    if string.byte(field, 1) == 58 then
      doomed[#doomed + 1] = field
      if #doomed == 200 then
        redis.call('HDEL', KEYS[1], unpack(doomed))
        doomed = {}
      end
    end
  end
  if #doomed > 0 then
    redis.call('HDEL', KEYS[1], unpack(doomed))
  end
end
-- unpack() is bounded by Lua's C stack: at most 200 arguments per command.
local last_deleted = 4 + tonumber(ARGV[4])
local i = 5
while i <= last_deleted do
  local last = math.min(i + 199, last_deleted)
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
local n = #ARGV
while i <= n do
  local last = math.min(i + 199, n)
  redis.call('HSET', KEYS[1], unpack(ARGV, i, last))
  i = last + 1
end
-- The creation time stays; the rest of the metadata is the request's.
redis.call('HSET', KEYS[1], '@m', string.match(meta, '^[^:]*') .. ':' .. ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
