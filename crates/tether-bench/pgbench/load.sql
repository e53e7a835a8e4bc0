-- tether-sql's load: the session row joined to its key rows, live only.
\set n random(1, 10000)
SELECT s.created_at, s.expires_at, s.idle_timeout_ms, s.absolute_deadline, s.principal, s.last_seen, s.device, s.address, k.key, k.value FROM tether_pgbench.s s LEFT JOIN tether_pgbench.k k ON k.session_id = s.id WHERE s.id = 'id' || :n AND s.expires_at > 1765000000000;
