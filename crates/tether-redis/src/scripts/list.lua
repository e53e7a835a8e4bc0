-- The live sessions of a principal (standalone), dropping entries whose session ended or is
-- bound to another principal: an entry is never followed into another principal's session.
-- KEYS[1]: the principal's index hash. ARGV[1]: session key prefix. ARGV[2]: the principal.
-- Returns handle, metadata, last use ('' for none), for each live session.
local entries = redis.call('HGETALL', KEYS[1])
local listed = {}
for i = 1, #entries, 2 do
  local handle = entries[i]
  local id = string.match(entries[i + 1], '^[^:]*')
  local fields = redis.call('HMGET', ARGV[1] .. id, '@m', '@s', '@p')
  if not fields[1] or fields[3] ~= ARGV[2] then
    redis.call('HDEL', KEYS[1], handle)
  else
    listed[#listed + 1] = handle
    listed[#listed + 1] = fields[1]
    listed[#listed + 1] = fields[2] or ''
  end
end
return listed
