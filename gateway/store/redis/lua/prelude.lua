-- Shared by every script, after the generated `P` (the store's tag) and `K` (key names)
-- lines: `opt` decodes an optional string ("" None, "=" + value otherwise); `restatus`
-- moves a delivery between the by-status indexes; `leave_order` takes a delivery out of
-- its FIFO key's line and, if it was the head, puts the next one in `due`.
local function opt(v) if v == '' then return false end return string.sub(v, 2) end
local function restatus(id, old, new)
  if old == new then return end
  if old then redis.call('ZREM', K.dlvs_by_status .. old, id) end
  redis.call('ZADD', K.dlvs_by_status .. new, 0, id)
end
-- Held, not dropped: `hold_row` moves a pending delivery of `target` to its held set;
-- `unhold` moves a held one to `status` ('pending' due at `nxt`, or 'skipped').
local function hold_row(id, target)
  local dkey = K.delivery .. id
  redis.call('HSET', dkey, 'status', 'held')
  redis.call('HDEL', dkey, 'lease', 'next')
  redis.call('ZREM', K.due, id)
  redis.call('ZREM', K.leases, id)
  restatus(id, 'pending', 'held')
  redis.call('ZADD', K.held .. target, 0, id)
  redis.call('SADD', K.held_targets, target)
end
local function unhold(id, target, status, nxt)
  local dkey = K.delivery .. id
  redis.call('HSET', dkey, 'status', status)
  redis.call('HDEL', dkey, 'lease')
  redis.call('ZREM', K.leases, id)
  if status == 'pending' then
    redis.call('HSET', dkey, 'next', nxt)
    redis.call('ZADD', K.due, nxt, id)
  else
    redis.call('HDEL', dkey, 'next')
  end
  restatus(id, 'held', status)
  redis.call('ZREM', K.held .. target, id)
end
-- Every held delivery of `target` to `status` (in accept order); answers their ids.
local function unhold_all(target, status, nxt)
  local ids = redis.call('ZRANGE', K.held .. target, 0, -1)
  for _, id in ipairs(ids) do unhold(id, target, status, nxt) end
  redis.call('DEL', K.held .. target)
  redis.call('SREM', K.held_targets, target)
  return ids
end
local function target_row(tkey)
  return redis.call('HMGET', tkey, 'data', 'failures', 'status', 'reenable', 'disabled_at',
    'next_probe', 'interval', 'probe')
end
-- Disable a target and hold its pending unleased deliveries; `probe`: disabled after
-- failures, so probed again `reenable` seconds from `now`.
local function disable_target(target, now, probe)
  local tkey = K.target .. target
  local f = redis.call('HMGET', tkey, 'status', 'reenable')
  if f[1] ~= 'disabled' then redis.call('HSET', tkey, 'disabled_at', now) end
  redis.call('HSET', tkey, 'status', 'disabled')
  redis.call('HDEL', tkey, 'probe', 'interval', 'next_probe')
  if probe then
    local wait = tonumber(f[2] or '600')
    redis.call('HSET', tkey, 'interval', f[2] or '600', 'next_probe',
      tostring(tonumber(now) + wait))
  end
  redis.call('INCR', K.targets_version)
  for _, id in ipairs(redis.call('ZRANGE', K.dlvs_by_target .. target, 0, -1)) do
    if redis.call('HGET', K.delivery .. id, 'status') == 'pending' then
      local until_at = redis.call('ZSCORE', K.leases, id)
      if not until_at or tonumber(until_at) <= tonumber(now) then hold_row(id, target) end
    end
  end
end
local function enable_target(target, now)
  local tkey = K.target .. target
  redis.call('HSET', tkey, 'status', 'active', 'failures', 0)
  redis.call('HDEL', tkey, 'disabled_at', 'next_probe', 'interval', 'probe')
  redis.call('INCR', K.targets_version)
  return unhold_all(target, 'pending', now)
end
-- Only the head of an ordering key's line is ever in `due` or `leases`: the others wait
-- in the list, and the head's final outcome (or cancel) lets the next one go.
local function leave_order(id, okey)
  if not okey then return end
  local line = K.order .. okey
  if redis.call('LINDEX', line, 0) ~= id then
    redis.call('LREM', line, 1, id)
    return
  end
  redis.call('LPOP', line)
  local head = redis.call('LINDEX', line, 0)
  if head then
    local nxt = redis.call('HGET', K.delivery .. head, 'next')
    if nxt then redis.call('ZADD', K.due, nxt, head) end
  end
end
