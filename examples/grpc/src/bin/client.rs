//! Calls the gRPC counter: `Increment` a few times in one session, printing the count and the
//! session id the server issued.
//!
//! Run with `cargo run -p example-grpc --bin client`; options: `--addr URL` (default
//! `http://127.0.0.1:50051`), `--calls N` (default 3), `--session ID` to go on with the session
//! of an earlier run.

use example_grpc::SessionClient;
use tether_sessions::core::error_chain;

struct Args {
    addr: String,
    calls: u32,
    session: Option<String>,
}

fn args() -> Result<Args, String> {
    let usage = "usage: client [--addr URL] [--calls N] [--session ID]";
    let mut parsed = Args {
        addr: "http://127.0.0.1:50051".to_owned(),
        calls: 3,
        session: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value; {usage}"));
        match arg.as_str() {
            "--addr" => parsed.addr = value()?,
            "--calls" => {
                let calls = value()?;
                parsed.calls = calls
                    .parse()
                    .map_err(|e| format!("--calls {calls:?}: {e}"))?;
            }
            "--session" => parsed.session = Some(value()?),
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other:?}; {usage}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let mut client = SessionClient::connect(args.addr.clone())
        .await
        .map_err(|e| format!("connecting to {}: {}", args.addr, error_chain(&e)))?;
    if let Some(id) = &args.session {
        client
            .set_session_id(id)
            .map_err(|e| format!("--session {id:?}: {e}"))?;
    }
    for _ in 0..args.calls {
        let count = client.increment().await?;
        println!(
            "count {count}, session {}",
            client.session_id().unwrap_or("<none>")
        );
    }
    Ok(())
}
