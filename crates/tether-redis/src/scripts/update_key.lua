-- Compare-and-set or increment of one data field of an existing session; never creates one.
-- KEYS[1]: the session hash. ARGV[1]: the data field (':<key>').
-- ARGV[2]: 'swap', or the codec of an increment: 'msgpack' or 'json'.
-- swap: ARGV[3] '1' when a value is expected, then ARGV[4] that value; ARGV[5] '1' to set,
-- then ARGV[6] the new value ('0': remove the field).
-- increment: ARGV[3] the amount, a decimal integer.
-- Returns {0} when the session does not exist; {1} or {1, value} when updated (the field is
-- now absent, or holds value); {2} or {2, value} on a conflict (what the field holds);
-- {3} when the field holds no counter or the sum leaves -(2^53-1)..2^53-1.
if redis.call('HEXISTS', KEYS[1], '@m') == 0 then
  return { 0 }
end
local current = redis.call('HGET', KEYS[1], ARGV[1])

local function answer(status, value)
  if status == 1 then
    -- A read after the write: a connection with CLIENT TRACKING (the near cache) tracks the
    -- key again, so the copy it brings up to date from this reply is invalidated by the next
    -- write.
    redis.call('EXISTS', KEYS[1])
  end
  if value then
    return { status, value }
  end
  return { status }
end

if ARGV[2] == 'swap' then
  local expected = false
  if ARGV[3] == '1' then
    expected = ARGV[4]
  end
  if current ~= expected then
    return answer(2, current)
  end
  if ARGV[5] == '1' then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[6])
    return answer(1, ARGV[6])
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  return answer(1, false)
end

-- Lua numbers are IEEE doubles: exact for every integer up to 2^53, hence the counter range.
local max = 9007199254740991

-- The integer a MessagePack value encodes, or nil when it encodes anything else (a float,
-- a text, trailing bytes). Negative numbers are read through their complement so that the
-- arithmetic stays exact.
local function msgpack_int(value)
  local n = #value
  if n == 0 then
    return nil
  end
  local first = string.byte(value, 1)
  if first <= 0x7f then
    return n == 1 and first or nil
  end
  if first >= 0xe0 then
    return n == 1 and first - 256 or nil
  end
  local sizes = { [0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8,
                  [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8 }
  local size = sizes[first]
  if not size or n ~= size + 1 then
    return nil
  end
  local negative = first >= 0xd0 and string.byte(value, 2) >= 0x80
  local x = 0
  for i = 2, n do
    local byte = string.byte(value, i)
    if negative then
      byte = 255 - byte
    end
    x = x * 256 + byte
  end
  if negative then
    x = -x - 1
  end
  return x
end

-- The integer a JSON value is, or nil: digits only, as serde_json writes an i64.
local function json_int(value)
  if not (string.match(value, '^%-?[1-9]%d*$') or string.match(value, '^%-?0$')) then
    return nil
  end
  if #value > 17 then
    return nil
  end
  return tonumber(value)
end

local by = tonumber(ARGV[3])
local old = 0
if current then
  if ARGV[2] == 'json' then
    old = json_int(current)
  else
    old = msgpack_int(current)
  end
end
if not old or not by or math.abs(old) > max or math.abs(by) > max then
  return { 3 }
end
local sum = old + by
if math.abs(sum) > max then
  return { 3 }
end
local encoded
if ARGV[2] == 'json' then
  encoded = string.format('%d', sum)
else
  encoded = cmsgpack.pack(sum)
end
redis.call('HSET', KEYS[1], ARGV[1], encoded)
return answer(1, encoded)
