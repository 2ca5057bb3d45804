-- ARGV[2...] are (delivery id, lease token) pairs. A row still under that token whose
-- target is disabled (and that is not its probe) becomes held; any other just loses its
-- lease. Returns the ids held.
local out = {}
for i = 2, #ARGV, 2 do
  local id, dkey = ARGV[i], K.delivery .. ARGV[i]
  local f = redis.call('HMGET', dkey, 'status', 'lease', 'target', 'next')
  if f[1] == 'pending' and f[2] == ARGV[i + 1] then
    local t = f[3] and redis.call('HMGET', K.target .. f[3], 'status', 'probe')
    if t and t[1] == 'disabled' and t[2] ~= id then
      hold_row(id, f[3])
      out[#out + 1] = id
    elseif redis.call('ZREM', K.leases, id) == 1 then
      redis.call('HDEL', dkey, 'lease')
      if f[4] then redis.call('ZADD', K.due, f[4], id) end
    end
  end
end
return out
