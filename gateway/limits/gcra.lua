-- One round trip for every check made in one event-loop iteration: KEYS[1] is the global
-- bucket, KEYS[2..] the app buckets; ARGV is the global interval and burst (microseconds,
-- tokens), then an interval and burst per app key. Checks run in order on the server's
-- clock (integer microseconds), each exactly as if alone: app bucket first, and a request
-- either bucket refuses spends nothing. Returns 5 integers per check: allowed,
-- retry_after_us, remaining, reset_us, scope (0 allowed, 1 app, 2 global).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local g_int = tonumber(ARGV[1])
local g_burst = tonumber(ARGV[2])
local g_tat = tonumber(redis.call('GET', KEYS[1]) or now)
local g_dirty = false
local tats = {}
local out = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local a_int = tonumber(ARGV[2 * i - 1])
  local a_burst = tonumber(ARGV[2 * i])
  local a_tat = tats[key]
  if a_tat == nil then a_tat = tonumber(redis.call('GET', key) or now) end
  if a_tat < now then a_tat = now end
  local a_new = a_tat + a_int
  local a_allow = a_new - a_burst * a_int
  local base = #out
  if now < a_allow then
    out[base + 1] = 0; out[base + 2] = a_allow - now; out[base + 3] = 0
    out[base + 4] = a_tat - now; out[base + 5] = 1
  else
    local g = g_tat
    if g < now then g = now end
    local g_new = g + g_int
    local g_allow = g_new - g_burst * g_int
    if now < g_allow then
      out[base + 1] = 0; out[base + 2] = g_allow - now; out[base + 3] = 0
      out[base + 4] = a_tat - now; out[base + 5] = 2
    else
      tats[key] = a_new
      g_tat = g_new
      g_dirty = true
      out[base + 1] = 1; out[base + 2] = 0
      out[base + 3] = math.floor((now - a_allow) / a_int)
      out[base + 4] = a_new - now; out[base + 5] = 0
    end
  end
end
for key, tat in pairs(tats) do
  redis.call('SET', key, tat, 'PX', math.ceil((tat - now) / 1000) + 1)
end
if g_dirty then
  redis.call('SET', KEYS[1], g_tat, 'PX', math.ceil((g_tat - now) / 1000) + 1)
end
return out
