-- Lists a session in its principal's index (Redis Cluster: the caller runs this before the
-- session's own write, so the index never misses a bound session).
-- KEYS[1]: the principal's index hash. ARGV[1]: the session's handle. ARGV[2]: its id.
-- ARGV[3]: now (Unix ms). ARGV[4]: keep the index until (Unix ms).
index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
