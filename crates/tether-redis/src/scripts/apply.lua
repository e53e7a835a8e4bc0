-- Applies one request's delta to an existing session; never creates one.
-- KEYS[1]: the session hash.
-- ARGV[1]: deadline (Unix ms). ARGV[2]: the metadata after the creation time,
-- 'deadline:idle:absolute'. ARGV[3]: '1' to clear every data field first.
-- ARGV[4]: index key prefix ('<prefix>:principal:') when this script keeps the principal index
-- (standalone), '' when the caller does (Cluster). ARGV[5]: the session's handle. ARGV[6]: its
-- id. ARGV[7]: now (Unix ms). ARGV[8]: sessions per principal at most (0: no bound). ARGV[9]:
-- keep the index until (Unix ms). ARGV[10]: session key prefix. ARGV[11]: the principal to bind
-- ('' for none). ARGV[12]: the session's last use ('' to keep it).
-- ARGV[13]: number R of data fields to delete, which follow in ARGV[14..13+R]; then data field,
-- value pairs to set.
-- Returns {1, principal before, principal after} when applied ('' for none), {0, '', ''} when
-- the session does not exist (deleted or expired).
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return { 0, '', '' }
end
if ARGV[3] == '1' then
  local doomed = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
    -- Data fields start with ':' (byte 58); the metadata fields with '@'.
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
local last_deleted = 13 + tonumber(ARGV[13])
local i = 14
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
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[1], '@s', ARGV[12])
end
local before = redis.call('HGET', KEYS[1], '@p')
local principal = before
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], '@p', ARGV[11])
  principal = ARGV[11]
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if ARGV[4] ~= '' and principal then
  if before and before ~= principal then
    redis.call('HDEL', ARGV[4] .. before, ARGV[5])
  end
  local index = ARGV[4] .. principal
  index_add(index, ARGV[5], ARGV[6], ARGV[7], ARGV[9])
  if ARGV[11] ~= '' then
    index_cap(index, ARGV[10], principal, ARGV[6], tonumber(ARGV[8]))
  end
end
return { 1, before or '', principal or '' }
