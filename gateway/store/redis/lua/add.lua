local lease, token, ttl, i = ARGV[2], ARGV[3], ARGV[4], 6
local event_id = ''
if ARGV[5] == '1' then
  event_id = ARGV[6]
  local meta, payload, app, etype, at, idem =
    ARGV[7], ARGV[8], ARGV[9], opt(ARGV[10]), ARGV[11], opt(ARGV[12])
  i = 13
  local ekey = K.event .. event_id
  local idem_key = idem and (K.idem .. idem)
  if idem_key then
    local original = redis.call('GET', idem_key)
    if original then
      -- the same id: a replay of this very call after its answer was lost
      if original == event_id then return {0, event_id} end
      -- a key older than its time to live passes to the new event, pruned or not yet
      local first = redis.call('HGET', K.event .. original, 'at')
      if first and tonumber(first) >= tonumber(at) - tonumber(ttl) then
        return {1, original}
      end
    end
  end
  if redis.call('EXISTS', ekey) == 1 then return {0, event_id} end
  redis.call('HSET', ekey, 'meta', meta, 'payload', payload, 'app', app, 'at', at)
  redis.call('ZADD', K.events, 0, event_id)
  redis.call('ZADD', K.events_by_app .. app, 0, event_id)
  redis.call('ZADD', K.events_by_time, at, event_id)
  if etype then
    redis.call('HSET', ekey, 'type', etype)
    redis.call('ZADD', K.events_by_type .. etype, 0, event_id)
  end
  if idem_key then
    redis.call('SET', idem_key, event_id, 'EX', math.max(1, math.ceil(tonumber(ttl))))
    redis.call('ZADD', K.idem_by_time, at, idem_key)
    redis.call('HSET', ekey, 'idem', idem_key)
  end
end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local id, meta, body, status, nxt, count, created, ev, target, rule, host, okey, attempts =
    ARGV[i], ARGV[i + 1], opt(ARGV[i + 2]), ARGV[i + 3], opt(ARGV[i + 4]), ARGV[i + 5],
    ARGV[i + 6], ARGV[i + 7], opt(ARGV[i + 8]), opt(ARGV[i + 9]), ARGV[i + 10],
    opt(ARGV[i + 11]), tonumber(ARGV[i + 12])
  local dkey = K.delivery .. id
  if redis.call('EXISTS', dkey) == 0 then
    redis.call('HSET', dkey, 'meta', meta, 'status', status, 'count', count,
      'created', created, 'event', ev, 'host', host)
    if body then redis.call('HSET', dkey, 'body', body) end
    if nxt then redis.call('HSET', dkey, 'next', nxt) end
    if target then
      redis.call('HSET', dkey, 'target', target)
      redis.call('ZADD', K.dlvs_by_target .. target, 0, id)
    end
    if rule then
      redis.call('HSET', dkey, 'rule', rule)
      redis.call('ZADD', K.dlvs_by_rule .. rule, 0, id)
    end
    for a = 1, attempts do redis.call('RPUSH', K.attempts .. id, ARGV[i + 12 + a]) end
    redis.call('ZADD', K.deliveries, 0, id)
    redis.call('ZADD', K.dlvs_by_status .. status, 0, id)
    redis.call('ZADD', K.dlvs_by_event .. ev, 0, id)
    if status == 'held' and target then
      redis.call('ZADD', K.held .. target, 0, id)
      redis.call('SADD', K.held_targets, target)
    end
    if status == 'pending' and okey then
      -- ordered: joins its key's line, due only as its head; never held by the commit
      redis.call('HSET', dkey, 'okey', okey)
      if redis.call('RPUSH', K.order .. okey, id) == 1 and nxt then
        redis.call('ZADD', K.due, nxt, id)
      end
    elseif status == 'pending' then
      if lease ~= '' then
        redis.call('ZADD', K.leases, lease, id)
        redis.call('HSET', dkey, 'lease', token)
      elseif nxt then redis.call('ZADD', K.due, nxt, id) end
    end
  end
  i = i + 13 + attempts
end
return {0, event_id}
