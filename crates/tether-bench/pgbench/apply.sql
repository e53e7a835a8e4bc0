-- tether-sql's apply of one changed key (no events, no cap): the session row's deadline moves,
-- the key row is upserted.
\set n random(1, 10000)
\set v random(1, 1000000)
WITH s AS (UPDATE tether_pgbench.s SET expires_at = 4000000000000 + :v, idle_timeout_ms = 1800000, absolute_deadline = NULL, principal = COALESCE(NULL, principal), handle = COALESCE(NULL::bytea, handle), last_seen = COALESCE(NULL::bigint, last_seen), device = CASE WHEN NULL::bigint IS NULL THEN device ELSE NULL END, address = CASE WHEN NULL::bigint IS NULL THEN address ELSE NULL END WHERE id = 'id' || :n AND expires_at > 1765000000000 RETURNING id),
cleared AS (DELETE FROM tether_pgbench.k k USING s WHERE false AND k.session_id = s.id AND k.key <> ALL(ARRAY['count'::bytea])),
removed AS (DELETE FROM tether_pgbench.k k USING s WHERE k.session_id = s.id AND k.key = ANY(ARRAY[]::bytea[])),
upserted AS (INSERT INTO tether_pgbench.k (session_id, key, value) SELECT s.id, u.key, u.value FROM s CROSS JOIN unnest(ARRAY['count'::bytea], ARRAY[(:v)::text::bytea]) AS u(key, value) ON CONFLICT (session_id, key) DO UPDATE SET value = EXCLUDED.value)
SELECT count(*) FROM s;
