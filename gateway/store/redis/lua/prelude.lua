-- Shared by every script, after the generated `P` (the store's tag) and `K` (key names)
-- lines: `opt` decodes an optional string ("" None, "=" + value otherwise); `restatus`
-- moves a delivery between the by-status indexes.
local function opt(v) if v == '' then return false end return string.sub(v, 2) end
local function restatus(id, old, new)
  if old == new then return end
  if old then redis.call('ZREM', K.dlvs_by_status .. old, id) end
  redis.call('ZADD', K.dlvs_by_status .. new, 0, id)
end
