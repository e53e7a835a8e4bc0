-- The session cap of a principal, in standalone Redis (and Sentinel). Prepended, after
-- events.lua and index.lua, to the scripts that bind sessions.

-- Revokes the oldest sessions of `principal` (by creation time, then id) other than `keep_id`
-- until at most `cap` remain, and drops entries whose session ended or belongs to another
-- principal. `sessions` is the session key prefix ('<prefix>:').
local function index_cap(index, sessions, principal, keep_id, cap)
  if cap <= 0 or redis.call('HLEN', index) <= cap then
    return
  end
  local entries = redis.call('HGETALL', index)
  local others = {}
  local live = 0
  for i = 1, #entries, 2 do
    local handle = entries[i]
    local id = string.match(entries[i + 1], '^[^:]*')
    local key = sessions .. id
    local fields = redis.call('HMGET', key, '@m', '@p')
    if not fields[1] or fields[2] ~= principal then
      redis.call('HDEL', index, handle)
    else
      live = live + 1
      if id ~= keep_id then
        local created = tonumber(string.match(fields[1], '^[^:]*')) or 0
        others[#others + 1] = { created, id, handle, key }
      end
    end
  end
  table.sort(others, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  local i = 1
  while live > cap and i <= #others do
    redis.call('DEL', others[i][4])
    redis.call('HDEL', index, others[i][3])
    deadline_drop(others[i][2], others[i][3], principal)
    emit('revoked', others[i][3], principal, '')
    live = live - 1
    i = i + 1
  end
end
