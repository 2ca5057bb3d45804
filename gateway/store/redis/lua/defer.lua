-- ARGV[2] a delivery id, ARGV[3] its holder's lease token, ARGV[4] when it is due again.
-- finish.lua's fence without an attempt (a delivery over its rate limit waits): the row
-- goes back to `due` unleased, its status and attempt count unchanged. Run twice, the
-- second run finds no lease and changes nothing.
local id, token, nxt = ARGV[2], ARGV[3], ARGV[4]
local dkey = K.delivery .. id
local f = redis.call('HMGET', dkey, 'status', 'lease')
if f[1] ~= 'pending' or f[2] ~= token then return 0 end
redis.call('HDEL', dkey, 'lease')
redis.call('HSET', dkey, 'next', nxt)
redis.call('ZREM', K.leases, id)
redis.call('ZADD', K.due, nxt, id)
return 1
