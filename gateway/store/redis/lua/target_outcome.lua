-- ARGV: target id, ok (1/0), disable_after (opt), gone (1/0), now, the probe wait's cap.
local target, ok, limit, gone = ARGV[2], ARGV[3] == '1', opt(ARGV[4]), ARGV[5] == '1'
local now, cap = ARGV[6], tonumber(ARGV[7])
local tkey = K.target .. target
local f = redis.call('HMGET', tkey, 'data', 'failures', 'status', 'interval', 'probe')
if not f[1] then return false end
if f[3] == 'disabled' then
  -- disabled by hand (no interval): outcomes change nothing
  if f[4] then
    if ok then
      enable_target(target, now)
    elseif f[5] then
      -- the probe failed: the next one waits twice as long, up to the cap
      local wait = math.min(tonumber(f[4]) * 2, cap)
      redis.call('HSET', tkey, 'failures', tonumber(f[2]) + 1, 'interval', tostring(wait),
        'next_probe', tostring(tonumber(now) + wait))
      redis.call('HDEL', tkey, 'probe')
      redis.call('INCR', K.targets_version)
    end
  end
  return target_row(tkey)
end
local failures = 0
if not ok then failures = tonumber(f[2]) + 1 end
redis.call('HSET', tkey, 'failures', failures)
if gone or (not ok and limit and failures >= tonumber(limit)) then
  disable_target(target, now, true)
end
return target_row(tkey)
