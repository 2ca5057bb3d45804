local now, n = ARGV[2], 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local dkey = K.delivery .. id
  local old = redis.call('HGET', dkey, 'status')
  if old then
    if old == 'held' then
      local target = redis.call('HGET', dkey, 'target')
      if target then redis.call('ZREM', K.held .. target, id) end
    end
    redis.call('HSET', dkey, 'status', 'pending', 'next', now)
    redis.call('HDEL', dkey, 'lease')
    redis.call('ZREM', K.leases, id)
    redis.call('ZADD', K.due, now, id)
    restatus(id, old, 'pending')
    n = n + 1
  end
end
return n
