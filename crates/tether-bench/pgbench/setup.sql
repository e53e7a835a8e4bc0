-- The tables of both libraries in schema tether_pgbench, 10,000 one-key sessions each:
-- s and k as tether-sql's migration makes them (sessions, session keys, their indexes), t as
-- tower-sessions-sqlx-store's PostgreSQL table.
DROP SCHEMA IF EXISTS tether_pgbench CASCADE;
CREATE SCHEMA tether_pgbench;
SET search_path = tether_pgbench;
CREATE TABLE s (id text PRIMARY KEY, created_at bigint NOT NULL, expires_at bigint NOT NULL, idle_timeout_ms bigint NOT NULL, absolute_deadline bigint, principal text, handle bytea, last_seen bigint, device text, address text);
CREATE INDEX s_exp ON s (expires_at);
CREATE INDEX s_pr ON s (principal, handle) WHERE principal IS NOT NULL;
CREATE TABLE k (session_id text NOT NULL REFERENCES s (id) ON DELETE CASCADE ON UPDATE CASCADE, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (session_id, key));
INSERT INTO s SELECT 'id' || n, 0, 4000000000000, 1800000, NULL, NULL, NULL, NULL, NULL, NULL FROM generate_series(1,10000) n;
INSERT INTO k SELECT 'id' || n, 'count'::bytea, '1'::bytea FROM generate_series(1,10000) n;
CREATE TABLE t (id text PRIMARY KEY NOT NULL, data bytea NOT NULL, expiry_date timestamptz NOT NULL);
INSERT INTO t SELECT 'id' || n, '\x83a26964c410000102030405060708090a0b0c0d0e0fa464617461810ba5636f756e7401ab6578706972795f64617465ce65a0bc00'::bytea, now() + interval '1 day' FROM generate_series(1,10000) n;
VACUUM ANALYZE;
