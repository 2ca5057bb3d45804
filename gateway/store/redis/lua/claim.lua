-- Expired leases first: their process died or stalled (what XAUTOCLAIM does for a stream's
-- consumer group); one whose retry is not due yet goes back to `due`. Then due rows. Rows
-- of a host in the skip list (ARGV[6...]) stay where they are: the walk steps past them
-- (one HGET each: a full host's backlog costs the claim about a microsecond per row).
local now_s, lease, token, limit = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local now = tonumber(now_s)
local skip, skipping = {}, #ARGV > 5
for i = 6, #ARGV do skip[ARGV[i]] = true end
local chunk = limit
if skipping then chunk = math.max(limit, 512) end
local claimed = {}
local function take(id)
  redis.call('ZADD', K.leases, lease, id)
  redis.call('HSET', K.delivery .. id, 'lease', token)
  claimed[#claimed + 1] = id
end
local offset = 0
while #claimed < limit do
  local ids = redis.call('ZRANGEBYSCORE', K.leases, '-inf', now_s, 'LIMIT', offset, chunk)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if #claimed >= limit then break end
    local f = redis.call('HMGET', K.delivery .. id, 'status', 'next', 'host')
    if f[1] == 'pending' and f[2] and tonumber(f[2]) <= now then
      if skipping and skip[f[3] or ''] then offset = offset + 1 else take(id) end
    else
      redis.call('ZREM', K.leases, id)
      if f[1] == 'pending' and f[2] then redis.call('ZADD', K.due, f[2], id) end
    end
  end
end
offset = 0
while #claimed < limit do
  local ids = redis.call('ZRANGEBYSCORE', K.due, '-inf', now_s, 'LIMIT', offset, chunk)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    if #claimed >= limit then break end
    local f = redis.call('HMGET', K.delivery .. id, 'status', 'host')
    if f[1] ~= 'pending' then
      redis.call('ZREM', K.due, id)
    elseif skipping and skip[f[2] or ''] then
      offset = offset + 1
    else
      redis.call('ZREM', K.due, id)
      take(id)
    end
  end
end
local out = {}
for n, id in ipairs(claimed) do
  local row = redis.call('HMGET', K.delivery .. id, 'meta', 'body', 'status', 'next', 'count')
  table.insert(row, 1, id)
  out[n] = row
end
return out
