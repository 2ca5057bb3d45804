if redis.call('DEL', K.target .. ARGV[2]) == 0 then return 0 end
redis.call('SREM', K.targets, ARGV[2])
redis.call('INCR', K.targets_version)
unhold_all(ARGV[2], 'skipped', false)
return 1
