//! The Redis harness against the real redis-server: start, talk, kill, restart.

use tether_conformance::RedisServer;

#[test]
fn a_server_starts_answers_and_restarts_empty() {
    let mut server = RedisServer::start().expect("redis-server");
    assert!(server.is_running());
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert_eq!(server.command("PING").expect("PING"), "PONG\n");
    assert_eq!(server.command("SET k v").expect("SET"), "OK\n");
    assert_eq!(server.command("RPUSH l a b").expect("RPUSH"), "2\n");
    assert_eq!(server.command("LRANGE l 0 -1").expect("LRANGE"), "a\nb\n");
    assert!(
        server
            .command("NOSUCHCOMMAND")
            .expect("reply")
            .starts_with("-ERR"),
        "errors keep their leading -"
    );

    server.kill();
    assert!(!server.is_running());
    assert!(server.pid().is_none());
    assert!(
        server.command("PING").is_err(),
        "a killed server does not answer"
    );

    let port = server.port();
    server.restart().expect("restart");
    assert_eq!(server.port(), port, "a restart keeps the port");
    assert_eq!(
        server.command("EXISTS k").expect("EXISTS"),
        "0\n",
        "nothing was persisted"
    );
}

#[test]
fn extra_arguments_reach_the_server() {
    let server = RedisServer::start_with(&["--maxmemory", "1mb"]).expect("redis-server");
    let reply = server.command("CONFIG GET maxmemory").expect("CONFIG GET");
    assert_eq!(reply, "maxmemory\n1048576\n");
}

#[test]
fn servers_stop_on_drop() {
    let server = RedisServer::start().expect("redis-server");
    let port = server.port();
    drop(server);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers after drop"
    );
}
