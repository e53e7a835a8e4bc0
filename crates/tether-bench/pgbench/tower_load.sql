-- tower-sessions-sqlx-store's load.
\set n random(1, 10000)
select data from tether_pgbench.t where id = 'id' || :n and expiry_date > now();
