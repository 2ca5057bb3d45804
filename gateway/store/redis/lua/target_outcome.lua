local tkey, ok, limit, gone = K.target .. ARGV[2], ARGV[3] == '1', opt(ARGV[4]), ARGV[5] == '1'
local f = redis.call('HMGET', tkey, 'data', 'failures', 'status')
if not f[1] then return false end
local failures = 0
if not ok then failures = tonumber(f[2]) + 1 end
local status = f[3]
if gone or (not ok and limit and failures >= tonumber(limit)) then status = 'disabled' end
redis.call('HSET', tkey, 'failures', failures, 'status', status)
if status ~= f[3] then redis.call('INCR', K.targets_version) end
return {f[1], tostring(failures), status}
