local batch = tonumber(ARGV[4])
local forgotten = redis.call('ZRANGEBYSCORE', K.idem_by_time, '-inf', '(' .. ARGV[3],
  'LIMIT', 0, batch)
for _, key in ipairs(forgotten) do
  redis.call('DEL', key)
  redis.call('ZREM', K.idem_by_time, key)
end
local ids = redis.call('ZRANGEBYSCORE', K.events_by_time, '-inf', '(' .. ARGV[2],
  'LIMIT', 0, batch)
for _, id in ipairs(ids) do
  local ekey = K.event .. id
  local f = redis.call('HMGET', ekey, 'app', 'type', 'idem')
  redis.call('DEL', ekey)
  redis.call('ZREM', K.events, id)
  redis.call('ZREM', K.events_by_time, id)
  if f[1] then redis.call('ZREM', K.events_by_app .. f[1], id) end
  if f[2] then redis.call('ZREM', K.events_by_type .. f[2], id) end
  if f[3] and redis.call('GET', f[3]) == id then
    redis.call('DEL', f[3])
    redis.call('ZREM', K.idem_by_time, f[3])
  end
  local by_event = K.dlvs_by_event .. id
  for _, d in ipairs(redis.call('ZRANGE', by_event, 0, -1)) do
    local dkey = K.delivery .. d
    local g = redis.call('HMGET', dkey, 'status', 'target', 'rule')
    if g[1] ~= 'pending' and g[1] ~= 'held' then
      redis.call('DEL', dkey, K.attempts .. d)
      redis.call('ZREM', K.deliveries, d)
      redis.call('ZREM', by_event, d)
      redis.call('ZREM', K.due, d)
      redis.call('ZREM', K.leases, d)
      if g[1] then redis.call('ZREM', K.dlvs_by_status .. g[1], d) end
      if g[2] then redis.call('ZREM', K.dlvs_by_target .. g[2], d) end
      if g[3] then redis.call('ZREM', K.dlvs_by_rule .. g[3], d) end
    end
  end
end
return {#ids, #forgotten}
