local id = ARGV[2]
local akey = K.app .. id
local name = redis.call('HGET', akey, 'name')
if not name then return 0 end
redis.call('DEL', akey)
redis.call('SREM', K.apps, id)
if redis.call('HGET', K.app_names, name) == id then redis.call('HDEL', K.app_names, name) end
redis.call('INCR', K.apps_version)
return 1
