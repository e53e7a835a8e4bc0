-- Reports the sessions of one shard that passed their deadline, at most ARGV[5] of them, and
-- takes them out of the deadline set. A session whose hash still holds a later deadline (it
-- was renewed) is put back at that deadline instead.
-- KEYS[1]: the shard's stream. KEYS[2]: the stream again, KEYS[3]: the shard's deadline set
-- (events.lua's layout; KEYS[1] is never written).
-- ARGV[1..3]: see events.lua. ARGV[4]: session key prefix of the shard. ARGV[5]: at most this
-- many.
-- Returns how many expiries were reported.
local due = redis.call('ZRANGEBYSCORE', log.deadlines, '-inf', log.now, 'LIMIT', 0, tonumber(ARGV[5]))
local reported = 0
for _, entry in ipairs(due) do
  local id, handle, principal = string.match(entry, '^([^\n]*)\n([^\n]*)\n(.*)$')
  redis.call('ZREM', log.deadlines, entry)
  if id then
    local meta = redis.call('HGET', ARGV[4] .. id, '@m')
    local deadline = meta and tonumber(string.match(meta, '^[^:]*:([^:]*)'))
    if deadline and deadline > tonumber(log.now) then
      redis.call('ZADD', log.deadlines, deadline, entry)
    else
      emit('expired', handle, principal, '')
      reported = reported + 1
    end
  end
end
return reported
