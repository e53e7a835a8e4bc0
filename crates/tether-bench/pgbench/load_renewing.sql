-- tether-sql's load_renewing on a session that is not due: the UPDATE in the CTE matches
-- nothing, the SELECT reads as load does.
\set n random(1, 10000)
WITH r AS (UPDATE tether_pgbench.s SET expires_at = LEAST(1765000000000 + idle_timeout_ms, COALESCE(absolute_deadline, 9223372036854775807)), last_seen = COALESCE(NULL::bigint, last_seen) WHERE id = 'id' || :n AND expires_at > 1765000000000 AND LEAST(1765000000000 + idle_timeout_ms, COALESCE(absolute_deadline, 9223372036854775807)) > expires_at AND idle_timeout_ms - GREATEST(expires_at - 1765000000000, 0) > idle_timeout_ms * 0.25::float8 RETURNING expires_at, last_seen)
SELECT s.created_at, COALESCE((SELECT expires_at FROM r), s.expires_at), s.idle_timeout_ms, s.absolute_deadline, s.principal, s.last_seen, s.device, s.address, EXISTS (SELECT 1 FROM r), k.key, k.value FROM tether_pgbench.s s LEFT JOIN tether_pgbench.k k ON k.session_id = s.id WHERE s.id = 'id' || :n AND s.expires_at > 1765000000000;
