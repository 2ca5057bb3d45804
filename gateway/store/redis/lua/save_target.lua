local id = ARGV[2]
redis.call('HSET', K.target .. id, 'data', ARGV[3], 'failures', ARGV[4], 'status', ARGV[5])
redis.call('SADD', K.targets, id)
redis.call('INCR', K.targets_version)
return 1
