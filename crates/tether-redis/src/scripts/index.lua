-- The principal index in standalone Redis (and Sentinel), where one script may reach every key:
-- one hash per principal, '<prefix>:principal:<principal>', field = session handle, value =
-- '<id>:<Unix ms when listed>'. Prepended to the scripts that keep it. (On Redis Cluster the
-- index lives in another slot than the session, and the store keeps it from the client.)

-- Lists session `id` (handle `handle`) in the index hash `index`, and keeps that hash at least
-- until `keep_until` (Unix ms): the latest its session can end.
local function index_add(index, handle, id, now, keep_until)
  redis.call('HSET', index, handle, id .. ':' .. now)
  if redis.call('PEXPIRETIME', index) < tonumber(keep_until) then
    redis.call('PEXPIREAT', index, keep_until)
  end
end
