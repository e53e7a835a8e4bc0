-- Reads a session and, when its idle deadline is due for renewal, renews it in the same step,
-- so a read-only request whose session must be kept alive costs one round trip. The rule is
-- `Expiry::needs_renewal`'s: the deadline would move, and more than the threshold's fraction
-- of the idle timeout has passed since the last renewal.
-- KEYS[1]: the session hash. KEYS[2], KEYS[3]: see events.lua.
-- ARGV[1..3]: see events.lua; ARGV[3], now (Unix ms), is the instant of the renewal.
-- ARGV[4]: the threshold, a fraction of the idle timeout. ARGV[5]: index key prefix
-- ('<prefix>:principal:') when this script keeps the principal index (standalone), '' when
-- the caller does (Cluster). ARGV[6]: the session's handle. ARGV[7]: its id. ARGV[8]: the last
-- use to record with a renewal ('' for none).
-- Returns {renewed (1 or 0), field, value, ...}: the flag, then the hash as it is after the
-- call ({0} when there is no session).
local meta = redis.call('HGET', KEYS[1], '@m')
if not meta then
  return { 0 }
end
local created, deadline, idle_text, absolute = string.match(meta, '^(%d+):(%d+):(%d+):(%d*)$')
-- Metadata this script cannot read is left as it is, for the client to report as corrupt.
if created then
  local now = tonumber(ARGV[3])
  deadline = tonumber(deadline)
  local idle = tonumber(idle_text)
  local renewed = now + idle
  if absolute ~= '' and tonumber(absolute) < renewed then
    renewed = tonumber(absolute)
  end
  local elapsed = idle - math.max(deadline - now, 0)
  if deadline > now and renewed > deadline and elapsed > idle * tonumber(ARGV[4]) then
    local renewed_text = string.format('%d', renewed)
    redis.call('HSET', KEYS[1], '@m', created .. ':' .. renewed_text .. ':' .. idle_text .. ':' .. absolute)
    if ARGV[8] ~= '' then
      redis.call('HSET', KEYS[1], '@s', ARGV[8])
    end
    redis.call('PEXPIREAT', KEYS[1], renewed_text)
    local principal = redis.call('HGET', KEYS[1], '@p')
    deadline_set(ARGV[7], ARGV[6], principal, renewed_text, principal)
    if ARGV[5] ~= '' and principal then
      index_add(ARGV[5] .. principal, ARGV[6], ARGV[7], ARGV[3], renewed_text)
    end
    local fields = redis.call('HGETALL', KEYS[1])
    table.insert(fields, 1, 1)
    return fields
  end
end
local fields = redis.call('HGETALL', KEYS[1])
table.insert(fields, 1, 0)
return fields
