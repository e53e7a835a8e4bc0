-- Applies one request's delta to an existing session; never creates one.
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua. ARGV[4]: deadline (Unix ms). ARGV[5]: the metadata after the
-- creation time, 'deadline:idle:absolute'. ARGV[6]: '1' to clear every data field first.
-- ARGV[7]: index key prefix ('<prefix>:principal:') when this script keeps the principal index
-- (standalone), '' when the caller does (Cluster). ARGV[8]: the session's handle. ARGV[9]: its
-- id. ARGV[10]: sessions per principal at most (0: no bound). ARGV[11]: keep the index until
-- (Unix ms). ARGV[12]: session key prefix. ARGV[13]: the principal to bind ('' for none).
-- ARGV[14]: the session's last use ('' to keep it).
-- ARGV[15]: number R of data fields to delete, which follow in ARGV[16..15+R]; then data field,
-- value pairs to set.
-- Returns {1, principal before, principal after} when applied ('' for none), {0, '', ''} when
-- the session does not exist (deleted or expired).
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return { 0, '', '' }
end
if ARGV[6] == '1' then
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
local last_deleted = 15 + tonumber(ARGV[15])
local i = 16
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
redis.call('HSET', KEYS[1], '@m', string.match(meta, '^[^:]*') .. ':' .. ARGV[5])
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[1], '@s', ARGV[14])
end
local before = redis.call('HGET', KEYS[1], '@p')
local principal = before
if ARGV[13] ~= '' then
  redis.call('HSET', KEYS[1], '@p', ARGV[13])
  principal = ARGV[13]
end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
deadline_set(ARGV[9], ARGV[8], principal, ARGV[4], before)
if ARGV[13] ~= '' then
  emit('principal_set', ARGV[8], principal, '')
end
if ARGV[7] ~= '' and principal then
  if before and before ~= principal then
    redis.call('HDEL', ARGV[7] .. before, ARGV[8])
  end
  local index = ARGV[7] .. principal
  index_add(index, ARGV[8], ARGV[9], ARGV[3], ARGV[11])
  if ARGV[13] ~= '' then
    index_cap(index, ARGV[12], principal, ARGV[9], tonumber(ARGV[10]))
  end
end
-- A read after the writes: a connection with CLIENT TRACKING (the near cache) tracks the key
-- again, so the copy it brings up to date from this reply is invalidated by the next write.
redis.call('EXISTS', KEYS[1])
return { 1, before or '', principal or '' }
