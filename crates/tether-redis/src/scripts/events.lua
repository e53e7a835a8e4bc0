-- Session events and deadlines, in the store's event log (when it keeps one): every script that
-- changes a session also writes what happened to the session's shard stream, and keeps the
-- session in the shard's deadline set, so the sweeper finds sessions that expired. Prepended to
-- the scripts that change sessions. Their KEYS[2] and KEYS[3] are the shard's stream and
-- deadline set (the session key again when there is no log), and ARGV[1] is '1' when there is
-- a log, ARGV[2] the oldest stream id to keep, ARGV[3] now (Unix ms).
local log = { on = ARGV[1] == '1', events = KEYS[2], deadlines = KEYS[3], minid = ARGV[2], now = ARGV[3] }

-- Appends an event: kind, session handle, principal ('' or false for none), the handle the
-- session had before ('' for none).
local function emit(kind, handle, principal, from)
  if not log.on then
    return
  end
  local fields = { 'k', kind, 'h', handle, 't', log.now }
  if principal and principal ~= '' then
    fields[#fields + 1] = 'p'
    fields[#fields + 1] = principal
  end
  if from and from ~= '' then
    fields[#fields + 1] = 'f'
    fields[#fields + 1] = from
  end
  redis.call('XADD', log.events, 'MINID', '~', log.minid, '*', unpack(fields))
end

-- The deadline set's member of a session: id, handle and principal, so the sweeper can report
-- an expiry after Redis has dropped the session's hash.
local function member(id, handle, principal)
  return id .. '\n' .. handle .. '\n' .. (principal or '')
end

-- Keeps the session in the deadline set at `deadline`; `before` is its principal before this
-- write, whose member goes.
local function deadline_set(id, handle, principal, deadline, before)
  if not log.on then
    return
  end
  if (before or '') ~= (principal or '') then
    redis.call('ZREM', log.deadlines, member(id, handle, before))
  end
  redis.call('ZADD', log.deadlines, deadline, member(id, handle, principal))
end

-- Takes the session out of the deadline set.
local function deadline_drop(id, handle, principal)
  if log.on then
    redis.call('ZREM', log.deadlines, member(id, handle, principal))
  end
end
