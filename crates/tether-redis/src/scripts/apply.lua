-- Applies one request's delta to an existing session; never creates one.
-- KEYS[1]: the session hash.
-- ARGV[1]: deadline (Unix ms). ARGV[2]: '1' to clear every data field first. ARGV[3]: number R
-- of fields to delete, which follow in ARGV[4..3+R]; then field, value pairs to set (session
-- keys and the expiry metadata).
-- Returns 1 when applied, 0 when the session does not exist (deleted or expired).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[2] == '1' then
  local doomed = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    -- Data fields start with ':' (byte 58); metadata fields with '@'.
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
local last_deleted = 3 + tonumber(ARGV[3])
local i = 4
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
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
