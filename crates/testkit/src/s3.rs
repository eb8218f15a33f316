use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{free_port, s3s_bin, Error, Result};

const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A real S3 endpoint (`s3s-fs`) on a loopback port serving a temp dir; buckets are
/// directories under [`S3Server::root`]. Killed and removed on drop.
#[derive(Debug)]
pub struct S3Server {
    process: Option<ServerProcess>,
    bin: PathBuf,
    port: u16,
    access_key: String,
    secret_key: String,
    bucket: String,
    root: PathBuf,
    log: PathBuf,
    // Dropped last: the process goes first.
    _dir: TempDir,
}

impl S3Server {
    /// Starts s3s-fs with fresh credentials and one empty bucket ([`S3Server::bucket`]).
    ///
    /// # Errors
    /// Missing binary, or the server not listening after a few attempts.
    pub async fn start() -> Result<S3Server> {
        let bin = s3s_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("omni-s3-")
            .tempdir()
            .map_err(Error::io("create s3 temp dir"))?;
        let root = dir.path().join("root");
        let bucket = "omni-backups".to_string();
        std::fs::create_dir_all(root.join(&bucket)).map_err(Error::io("create bucket dir"))?;
        let nonce = std::process::id() ^ dir.path().as_os_str().len() as u32;
        let mut server = S3Server {
            process: None,
            bin,
            port: 0,
            access_key: format!("TESTKEY{nonce:08X}"),
            secret_key: format!("test-secret-{nonce:08x}-{}", free_port()?),
            bucket,
            log: dir.path().join("s3s-fs.log"),
            root,
            _dir: dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::Invalid("no start attempt".into())))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Access key id accepted by the server.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Secret access key accepted by the server.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Region to sign requests for.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The server's root dir (bucket dirs plus s3s-fs's internal upload files).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding bucket `bucket`'s objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.join(&self.bucket)
    }

    /// Creates another (empty) bucket.
    ///
    /// # Errors
    /// I/O failure.
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        std::fs::create_dir_all(self.root.join(name)).map_err(Error::io("create bucket dir"))
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Kills the server (SIGKILL); data stays.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Starts the server again on the same port and root dir.
    ///
    /// # Errors
    /// The server not coming back.
    pub async fn restart(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        self.spawn_and_wait().await
    }

    /// Restarts the server with a new secret key, as when credentials are
    /// rotated behind a client's back.
    ///
    /// # Errors
    /// The server not coming back.
    pub async fn rotate_secret(&mut self, secret: &str) -> Result<()> {
        self.stop();
        self.secret_key = secret.to_string();
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(&self.root);
        let mut process = ServerProcess::spawn(cmd, &self.log)?;
        let addr = ("127.0.0.1", self.port);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.exit_status() {
                return Err(Error::Exited {
                    what: "s3s-fs".into(),
                    status,
                    log_tail: process.log_tail(),
                });
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                self.process = Some(process);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: "s3s-fs".into(),
                    after: READY_TIMEOUT,
                    log_tail: process.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
