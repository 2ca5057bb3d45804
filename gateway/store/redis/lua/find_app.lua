local data = redis.call('HGET', K.app .. ARGV[2], 'data')
if data then return data end
local id = redis.call('HGET', K.app_names, ARGV[2])
if id then return redis.call('HGET', K.app .. id, 'data') end
return false
