-- ARGV[2...] are delivery ids: each still pending becomes cancelled and leaves the due
-- queue and the leases (a worker holding it then finds its lease gone and records
-- nothing); a cancelled head of an ordering key lets the next one go. Returns the ids
-- cancelled.
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local dkey = K.delivery .. id
  local f = redis.call('HMGET', dkey, 'status', 'okey')
  if f[1] == 'pending' then
    redis.call('HSET', dkey, 'status', 'cancelled')
    redis.call('HDEL', dkey, 'lease', 'next')
    redis.call('ZREM', K.leases, id)
    redis.call('ZREM', K.due, id)
    restatus(id, 'pending', 'cancelled')
    leave_order(id, f[2])
    out[#out + 1] = id
  end
end
return out
