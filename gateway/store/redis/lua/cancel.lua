-- ARGV[2...] are delivery ids: each still pending becomes cancelled and leaves the due
-- queue and the leases (a worker holding it then finds its lease gone and records
-- nothing). Returns the ids cancelled.
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local dkey = K.delivery .. id
  if redis.call('HGET', dkey, 'status') == 'pending' then
    redis.call('HSET', dkey, 'status', 'cancelled')
    redis.call('HDEL', dkey, 'lease', 'next')
    redis.call('ZREM', K.leases, id)
    redis.call('ZREM', K.due, id)
    restatus(id, 'pending', 'cancelled')
    out[#out + 1] = id
  end
end
return out
