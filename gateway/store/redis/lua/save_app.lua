local id, name, data = ARGV[2], ARGV[3], ARGV[4]
local akey = K.app .. id
local owner = redis.call('HGET', K.app_names, name)
if owner and owner ~= id then return 0 end
local old = redis.call('HGET', akey, 'name')
if old and old ~= name and redis.call('HGET', K.app_names, old) == id then
  redis.call('HDEL', K.app_names, old)
end
redis.call('HSET', akey, 'data', data, 'name', name)
redis.call('SADD', K.apps, id)
redis.call('HSET', K.app_names, name, id)
redis.call('INCR', K.apps_version)
return 1
