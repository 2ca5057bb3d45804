-- ARGV: id, data, failures, status, reenable, then disabled_at, next_probe, interval,
-- probe as optional strings.
local id = ARGV[2]
local tkey = K.target .. id
redis.call('HSET', tkey, 'data', ARGV[3], 'failures', ARGV[4], 'status', ARGV[5],
  'reenable', ARGV[6])
local names = {'disabled_at', 'next_probe', 'interval', 'probe'}
for n, name in ipairs(names) do
  local value = opt(ARGV[6 + n])
  if value then redis.call('HSET', tkey, name, value) else redis.call('HDEL', tkey, name) end
end
redis.call('SADD', K.targets, id)
redis.call('INCR', K.targets_version)
return 1
