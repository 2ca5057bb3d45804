-- ARGV[2...] are (delivery id, lease token) pairs; only rows still under that token count.
for i = 2, #ARGV, 2 do
  local id, dkey = ARGV[i], K.delivery .. ARGV[i]
  local f = redis.call('HMGET', dkey, 'status', 'next', 'lease')
  if f[1] == 'pending' and f[3] == ARGV[i + 1] and redis.call('ZREM', K.leases, id) == 1 then
    redis.call('HDEL', dkey, 'lease')
    if f[2] then redis.call('ZADD', K.due, f[2], id) end
  end
end
return 0
