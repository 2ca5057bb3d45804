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
