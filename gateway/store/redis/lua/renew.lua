local out = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', K.delivery .. id, 'status', 'lease')
  if f[1] == 'pending' and f[2] == ARGV[i + 1] and redis.call('ZSCORE', K.leases, id) then
    redis.call('ZADD', K.leases, ARGV[2], id)
    out[#out + 1] = id
  end
end
return out
