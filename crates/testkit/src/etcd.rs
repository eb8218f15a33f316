use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::Client;
use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::tls::{connect_options, ServerTls, TlsPem};
use crate::{etcd_bins, free_port, Error, EtcdBins, Result};

const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_FOR: Duration = Duration::from_secs(10);

/// One etcd member: its ports, data dir and (while running) its process.
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    tls: Option<ServerTls>,
    process: Option<ServerProcess>,
}

impl EtcdMember {
    /// Member name (`m0`, `m1`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:<client port>` (`https://` for a TLS cluster).
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer port>`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The member's data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether the member process is running (it may still be starting).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn spawn(&mut self, bins: &EtcdBins, initial_cluster: &str) -> Result<()> {
        let mut cmd = Command::new(&bins.etcd);
        cmd.arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--listen-client-urls={}", self.client_url()))
            .arg(format!("--advertise-client-urls={}", self.client_url()))
            .arg(format!("--listen-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", self.peer_url()))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .args([
                "--initial-cluster-state=new",
                "--initial-cluster-token=omni-testkit",
            ])
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            // Test data is disposable; skipping fsync makes puts fast.
            .args(["--unsafe-no-fsync", "--log-level=warn"])
            .arg(format!("--quota-backend-bytes={}", 8u64 << 30));
        if let Some(tls) = &self.tls {
            cmd.arg(format!("--cert-file={}", tls.cert_file.display()))
                .arg(format!("--key-file={}", tls.key_file.display()))
                .arg(format!("--trusted-ca-file={}", tls.ca_file.display()))
                .arg("--client-cert-auth");
        }
        self.process = Some(ServerProcess::spawn(cmd, &self.log)?);
        Ok(())
    }

    /// Waits until the member answers a status call (with a leader when `need_leader`).
    async fn wait_ready(&mut self, need_leader: bool) -> Result<()> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let url = self.client_url();
        let tls = self.tls.as_ref().map(|t| t.pem.clone());
        loop {
            let Some(process) = self.process.as_mut() else {
                return Err(Error::Invalid(format!("member {} is stopped", self.name)));
            };
            if let Some(status) = process.exit_status() {
                let log_tail = process.log_tail();
                self.process = None;
                return Err(Error::Exited {
                    what: format!("etcd member {}", self.name),
                    status,
                    log_tail,
                });
            }
            if let Ok(leader) = status_leader(&url, tls.as_ref()).await {
                if leader != 0 || !need_leader {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: format!("etcd member {}", self.name),
                    after: READY_TIMEOUT,
                    log_tail: process.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn status_leader(url: &str, tls: Option<&TlsPem>) -> Result<u64> {
    let opts = connect_options(tls)
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(Duration::from_secs(2));
    let fut = async {
        let mut client = Client::connect([url], Some(opts)).await?;
        Ok::<_, Error>(client.status().await?.leader())
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .map_err(|_| Error::Timeout(Duration::from_secs(3)))?
}

/// A real etcd cluster on loopback ports, in a temp dir; killed and removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<EtcdMember>,
    initial_cluster: String,
    bins: EtcdBins,
    // Dropped last: members (processes) go first.
    dir: TempDir,
}

impl EtcdCluster {
    /// Starts a fresh cluster of `members` members (1 or 3 are typical) and waits until
    /// every member answers and a leader is elected. Retries with new ports when a
    /// member fails to start (e.g. a port was taken meanwhile).
    ///
    /// # Errors
    /// Missing binaries, or the cluster not getting ready after a few attempts.
    pub async fn start(members: usize) -> Result<EtcdCluster> {
        Self::start_with(members, false).await
    }

    /// Like [`EtcdCluster::start`], but clients must use TLS with a client certificate
    /// (`--client-cert-auth`); see [`EtcdCluster::tls`]. Peers talk plain http.
    ///
    /// # Errors
    /// As [`EtcdCluster::start`].
    pub async fn start_tls(members: usize) -> Result<EtcdCluster> {
        Self::start_with(members, true).await
    }

    async fn start_with(members: usize, tls: bool) -> Result<EtcdCluster> {
        if members == 0 {
            return Err(Error::Invalid(
                "an etcd cluster needs at least one member".into(),
            ));
        }
        let bins = etcd_bins()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let mut cluster = Self::layout(members, bins.clone(), tls)?;
            match cluster.boot().await {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::Invalid("no start attempt".into())))
    }

    /// Restores `snapshot` with `etcdutl snapshot restore` into a new single-member
    /// cluster and starts it, so tests can read back what a backup contained.
    ///
    /// # Errors
    /// etcdutl rejecting the snapshot, or the member not starting.
    pub async fn restore_single(snapshot: &Path) -> Result<EtcdCluster> {
        if !snapshot.is_file() {
            return Err(Error::MissingPath(snapshot.to_path_buf()));
        }
        let bins = etcd_bins()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let mut cluster = Self::layout(1, bins.clone(), false)?;
            let m = &cluster.members[0];
            bins.snapshot_restore(snapshot, &m.data_dir, &m.name, &m.peer_url())?;
            match cluster.boot().await {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::Invalid("no start attempt".into())))
    }

    fn layout(n: usize, bins: EtcdBins, tls: bool) -> Result<EtcdCluster> {
        let dir = tempfile::Builder::new()
            .prefix("omni-etcd-")
            .tempdir()
            .map_err(Error::io("create etcd temp dir"))?;
        let tls = if tls {
            Some(crate::tls::generate(dir.path())?)
        } else {
            None
        };
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            members.push(EtcdMember {
                name: format!("m{i}"),
                client_port: free_port()?,
                peer_port: free_port()?,
                data_dir: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                tls: tls.clone(),
                process: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(EtcdCluster {
            members,
            initial_cluster,
            bins,
            dir,
        })
    }

    async fn boot(&mut self) -> Result<()> {
        for m in &mut self.members {
            m.spawn(&self.bins, &self.initial_cluster)?;
        }
        for m in &mut self.members {
            m.wait_ready(true).await?;
        }
        Ok(())
    }

    /// The members, in order.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// Member `i`.
    ///
    /// # Panics
    /// When `i` is out of range (test misuse).
    pub fn member(&self, i: usize) -> &EtcdMember {
        &self.members[i]
    }

    /// Client URLs of all members (running or not), in member order.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::client_url).collect()
    }

    /// Client URLs of the running members.
    pub fn running_client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.is_running())
            .map(EtcdMember::client_url)
            .collect()
    }

    /// Client TLS material of a cluster started with [`EtcdCluster::start_tls`].
    pub fn tls(&self) -> Option<&TlsPem> {
        self.members
            .first()
            .and_then(|m| m.tls.as_ref())
            .map(|t| &t.pem)
    }

    /// The binaries this cluster runs with.
    pub fn bins(&self) -> &EtcdBins {
        &self.bins
    }

    /// The cluster's temp dir (data dirs and logs live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills member `i` (SIGKILL); its data dir stays.
    ///
    /// # Errors
    /// `i` out of range.
    pub fn stop_member(&mut self, i: usize) -> Result<()> {
        let m = self.get_mut(i)?;
        m.process = None;
        Ok(())
    }

    /// Restarts member `i` on the same ports and data dir and waits until it answers.
    ///
    /// # Errors
    /// `i` out of range, or the member not coming back.
    pub async fn start_member(&mut self, i: usize) -> Result<()> {
        let bins = self.bins.clone();
        let initial = self.initial_cluster.clone();
        let m = self.get_mut(i)?;
        if m.process.is_none() {
            m.spawn(&bins, &initial)?;
        }
        m.wait_ready(false).await
    }

    /// Waits until every running member answers and sees a leader.
    ///
    /// # Errors
    /// A member not ready within 30 s.
    pub async fn wait_healthy(&mut self) -> Result<()> {
        for m in self.members.iter_mut().filter(|m| m.is_running()) {
            m.wait_ready(true).await?;
        }
        Ok(())
    }

    /// A client connected to the running members.
    ///
    /// # Errors
    /// Connection failure.
    pub async fn client(&self) -> Result<Client> {
        let opts = connect_options(self.tls())
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        Ok(Client::connect(self.running_client_urls(), Some(opts)).await?)
    }

    /// Puts `key = value` through a fresh client, retrying transient failures (e.g.
    /// a leader election after a member was stopped) for up to 10 s.
    ///
    /// # Errors
    /// No running member, or the put still failing after 10 s.
    pub async fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        self.retrying(|mut c| {
            let (key, value) = (key.clone(), value.clone());
            async move { c.put(key, value, None).await.map(drop) }
        })
        .await
    }

    /// Reads `key` through a fresh client, retrying transient failures for up to 10 s.
    ///
    /// # Errors
    /// No running member, or the read still failing after 10 s.
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        self.retrying(|mut c| {
            let key = key.clone();
            async move {
                let resp = c.get(key, None).await?;
                Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
            }
        })
        .await
    }

    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        if self.running_client_urls().is_empty() {
            return Err(Error::Invalid("no etcd member is running".into()));
        }
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        loop {
            let res = match self.client().await {
                Ok(c) => op(c).await.map_err(Error::from),
                Err(e) => Err(e),
            };
            match res {
                Ok(v) => return Ok(v),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => tracing::debug!(error = %e, "etcd request failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn get_mut(&mut self, i: usize) -> Result<&mut EtcdMember> {
        let n = self.members.len();
        self.members
            .get_mut(i)
            .ok_or_else(|| Error::Invalid(format!("member {i} out of range (cluster has {n})")))
    }
}
