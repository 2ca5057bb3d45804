local id, name, data = ARGV[2], ARGV[3], ARGV[4]
local akey = K.app .. id
local owner = redis.call('HGET', K.app_names, name)
if owner then
  -- the same record: a replay of this very call after its answer was lost
  if owner == id and redis.call('HGET', akey, 'data') == data then return 1 end
  return 0
end
if redis.call('EXISTS', akey) == 1 then return -1 end
redis.call('HSET', akey, 'data', data, 'name', name)
redis.call('SADD', K.apps, id)
redis.call('HSET', K.app_names, name, id)
redis.call('INCR', K.apps_version)
return 1
