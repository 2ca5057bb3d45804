-- One delivery rate limit, shared by every gateway on this Redis: ARGV[2] the bucket's
-- name, ARGV[3] now, ARGV[4] the interval (1 / rate), ARGV[5] the burst; times in integer
-- microseconds, on the caller's clock (as leases are). The GCRA step of
-- gateway/limits/gcra.lua for a single bucket. Returns 0 and spends a slot, or the
-- microseconds until a slot is free, spending nothing.
local key = K.delivery_slot .. ARGV[2]
local now, int, burst = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local new = tat + int
local allow = new - burst * int
if now < allow then return allow - now end
redis.call('SET', key, new, 'PX', math.ceil((new - now) / 1000) + 1)
return 0
