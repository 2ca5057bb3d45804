-- ARGV: target id, 'active' or 'disabled' (by hand: never probed), now.
local target, status, now = ARGV[2], ARGV[3], ARGV[4]
local tkey = K.target .. target
if redis.call('EXISTS', tkey) == 0 then return false end
if status == 'active' then enable_target(target, now) else disable_target(target, now, false) end
return target_row(tkey)
