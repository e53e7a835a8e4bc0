//! Why the harness could not start a server or a setup.

use std::path::PathBuf;
use std::time::Duration;

/// Why a test server, cluster or Sentinel setup could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `redis-server` or `redis-cli` is not installed where the harness looked.
    #[error(
        "{program} not found (looked for `{}`): install it with \
         `apt-get install -y redis-server redis-tools`, or set {env} to its path",
        path.display()
    )]
    NotInstalled {
        /// `redis-server` or `redis-cli`.
        program: &'static str,
        /// Where it was looked for: the value of `env`, or the bare name (searched on `PATH`).
        path: PathBuf,
        /// The environment variable that overrides `path`.
        env: &'static str,
    },
    /// A file, a directory or a process could not be made.
    #[error("{what} failed")]
    Io {
        /// The step: `spawning redis-server`, `writing sentinel.conf`, ...
        what: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A helper command ran and failed (`openssl`, `redis-cli --cluster create`).
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// A server started but did not answer `PING`; it has been killed.
    #[error("redis-server on port {port} did not start; the end of its log:\n{log}")]
    NotStarted {
        /// The loopback port it was given.
        port: u16,
        /// The last lines of its log file.
        log: String,
    },
    /// Something the harness waits for did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited: `the replica to sync with the master`, ...
        what: String,
        /// How long it waited.
        after: Duration,
    },
}
