local now, n = ARGV[2], 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local dkey = K.delivery .. id
  local f = redis.call('HMGET', dkey, 'status', 'okey')
  local old, okey = f[1], f[2]
  if old then
    if old == 'held' then
      local target = redis.call('HGET', dkey, 'target')
      if target then redis.call('ZREM', K.held .. target, id) end
    end
    redis.call('HSET', dkey, 'status', 'pending', 'next', now)
    redis.call('HDEL', dkey, 'lease')
    redis.call('ZREM', K.leases, id)
    local line = okey and (K.order .. okey)
    -- a finished ordered delivery joins the back of its key's line; due only as its head
    if line and old ~= 'pending' then redis.call('RPUSH', line, id) end
    if not line or redis.call('LINDEX', line, 0) == id then
      redis.call('ZADD', K.due, now, id)
    end
    restatus(id, old, 'pending')
    n = n + 1
  end
end
return n
