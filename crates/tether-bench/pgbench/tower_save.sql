-- tower-sessions-sqlx-store's save: the whole record (about 50 bytes of MessagePack for one key)
-- upserted as one row.
\set n random(1, 10000)
\set v random(1, 1000000)
insert into tether_pgbench.t (id, data, expiry_date) values ('id' || :n, decode(lpad((:v)::text, 100, '0'), 'hex'), now() + interval '1 day') on conflict(id) do update set data = excluded.data, expiry_date = excluded.expiry_date returning id;
