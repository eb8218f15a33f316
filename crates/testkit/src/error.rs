use std::path::PathBuf;
use std::time::Duration;

/// Errors of the test kit. Messages carry the server's log tail where useful.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A needed binary was found neither via its env var, the cache dir, nor `PATH`.
    #[error("binary `{name}` not found (set {env} or run scripts/setup-test-deps.sh)")]
    BinaryNotFound {
        name: &'static str,
        env: &'static str,
    },
    /// Spawning or talking to a process failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A server did not become ready in time.
    #[error("{what} not ready after {after:?}; log tail:\n{log_tail}")]
    NotReady {
        what: String,
        after: Duration,
        log_tail: String,
    },
    /// A server process exited during startup.
    #[error("{what} exited during startup ({status}); log tail:\n{log_tail}")]
    Exited {
        what: String,
        status: String,
        log_tail: String,
    },
    /// An etcd client call failed.
    #[error("etcd client: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A helper command (etcdutl, etcdctl) failed.
    #[error("command {cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// `wait_until` ran out of time.
    #[error("condition not met within {0:?}")]
    Timeout(Duration),
    /// Index out of range or similar misuse.
    #[error("invalid use: {0}")]
    Invalid(String),
    /// A path that should exist does not.
    #[error("missing path {0}")]
    MissingPath(PathBuf),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// Result alias of the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;
