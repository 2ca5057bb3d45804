local id = redis.call('GET', K.idem .. ARGV[2])
if not id then return false end
local at = redis.call('HGET', K.event .. id, 'at')
if at and tonumber(at) >= tonumber(ARGV[3]) then return id end
return false
