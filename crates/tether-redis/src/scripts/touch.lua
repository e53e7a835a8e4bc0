-- Moves an existing session's deadline; never creates one.
-- KEYS[1]: the session hash. ARGV[1]: deadline (Unix ms). ARGV[2]: idle timeout (ms).
-- ARGV[3]: absolute deadline (Unix ms) or '' for none.
-- Returns 1 when moved, 0 when the session does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], '@expires', ARGV[1], '@idle', ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], '@absolute')
else
  redis.call('HSET', KEYS[1], '@absolute', ARGV[3])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
