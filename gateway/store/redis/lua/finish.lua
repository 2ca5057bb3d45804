local id, attempt, status, nxt, token = ARGV[2], ARGV[3], ARGV[4], opt(ARGV[5]), ARGV[6]
local dkey, akey = K.delivery .. id, K.attempts .. id
local f = redis.call('HMGET', dkey, 'status', 'lease', 'okey')
if not f[1] then return 0 end
-- a replay of this very call after its answer was lost records nothing twice
if redis.call('LINDEX', akey, -1) == attempt then return 1 end
-- the fence: only the current holder records an outcome
if f[1] ~= 'pending' or f[2] ~= token then return 0 end
local old = f[1]
redis.call('HDEL', dkey, 'lease')
redis.call('RPUSH', akey, attempt)
redis.call('HINCRBY', dkey, 'count', 1)
redis.call('HSET', dkey, 'status', status)
if nxt then redis.call('HSET', dkey, 'next', nxt) else redis.call('HDEL', dkey, 'next') end
redis.call('ZREM', K.leases, id)
redis.call('ZREM', K.due, id)
if status == 'pending' and nxt then redis.call('ZADD', K.due, nxt, id) end
if status == 'held' then
  -- a probe that failed waits with the rest of its target's held deliveries
  local target = redis.call('HGET', dkey, 'target')
  if target then
    redis.call('ZADD', K.held .. target, 0, id)
    redis.call('SADD', K.held_targets, target)
  end
end
-- a held probe stays the head of its ordering key: its key waits for it
if status ~= 'pending' and status ~= 'held' then leave_order(id, f[3]) end
restatus(id, old, status)
return 1
