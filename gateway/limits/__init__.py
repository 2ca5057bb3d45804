"""Rate limits: GCRA buckets in process and on Redis (one Lua script), the token-guessing
guard, and the small Redis protocol client the hot path uses."""
