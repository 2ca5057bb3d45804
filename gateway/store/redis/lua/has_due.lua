local now_s = ARGV[2]
local now = tonumber(now_s)
if #redis.call('ZRANGEBYSCORE', K.due, '-inf', now_s, 'LIMIT', 0, 1) > 0 then return 1 end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.leases, '-inf', now_s, 'LIMIT', 0, 100)) do
  local f = redis.call('HMGET', K.delivery .. id, 'status', 'next')
  if f[1] == 'pending' and f[2] and tonumber(f[2]) <= now then return 1 end
end
return 0
