-- ARGV: now. For each target with held deliveries: deleted, skip them; active (held by a
-- view that was behind), release them; disabled after failures with its probe due and
-- none out, make the oldest pending as the probe. Answers the ids made pending.
local now = ARGV[2]
local made = {}
for _, target in ipairs(redis.call('SMEMBERS', K.held_targets)) do
  local hkey = K.held .. target
  local f = redis.call('HMGET', K.target .. target, 'status', 'interval', 'next_probe', 'probe')
  if redis.call('ZCARD', hkey) == 0 then
    redis.call('SREM', K.held_targets, target)
  elseif not f[1] then
    unhold_all(target, 'skipped', false)
  elseif f[1] == 'active' then
    for _, id in ipairs(unhold_all(target, 'pending', now)) do made[#made + 1] = id end
  elseif f[2] and f[3] and tonumber(f[3]) <= tonumber(now) then
    local out = f[4] and redis.call('HGET', K.delivery .. f[4], 'status')
    if out ~= 'pending' then
      local first = redis.call('ZRANGE', hkey, 0, 0)[1]
      unhold(first, target, 'pending', now)
      redis.call('HSET', K.target .. target, 'probe', first,
        'next_probe', tostring(tonumber(now) + tonumber(f[2])))
      redis.call('INCR', K.targets_version)
      made[#made + 1] = first
    end
  end
end
return made
