-- The floor of any write: one row, no indexed column changed, one commit.
\set n random(1, 10000)
\set v random(1, 1000000)
UPDATE tether_pgbench.t SET data = (:v)::text::bytea WHERE id = 'id' || :n;
