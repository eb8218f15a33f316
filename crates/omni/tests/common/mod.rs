//! Harness for end-to-end tests: the real `omni` server on a loopback port
//! with a temp data dir, driven through the real `omnictl` binary.
#![allow(dead_code)]

pub mod replica;
pub mod slow_proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The seed's cluster YAML (`omnictl get cluster talos-default -o yaml`).
pub const SEED_CLUSTER: &str = "metadata:
  namespace: default
  type: Clusters.omni.sidero.dev
  id: talos-default
  finalizers:
    - KubernetesUpgradeStatusController
    - TalosUpgradeStatusController
    - SecretsController
    - ClusterController
spec:
  installimage: \"\"
  kubernetesversion: 1.28.2
  talosversion: 1.5.5
  features:
    enableworkloadproxy: false
    diskencryption: false
";

pub const WAIT: Duration = Duration::from_secs(60);

pub fn omni_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_omni"))
}

/// `omnictl` sits beside `omni` once `cargo build --workspace --bins` ran
/// (scripts/test.sh does).
pub fn omnictl_bin() -> PathBuf {
    let p = omni_bin().with_file_name("omnictl");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace --bins` (scripts/test.sh does)",
        p.display()
    );
    p
}

pub struct Omni {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub token: String,
    args: Vec<String>,
    log: PathBuf,
}

impl Omni {
    /// Starts omni with `args` (plus data dir and bind) and waits until ready.
    pub async fn start(args: &[&str]) -> Omni {
        let dir = tempfile::tempdir().unwrap();
        let port = omni_testkit::free_port().unwrap();
        let log = dir.path().join("omni.log");
        let mut omni = Omni {
            child: None,
            dir,
            port,
            token: String::new(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log,
        };
        omni.spawn().await;
        omni.token = std::fs::read_to_string(omni.data_dir().join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        omni
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(omni_bin())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/readyz", self.endpoint());
        let client = reqwest::Client::new();
        omni_testkit::wait_until(WAIT, || {
            let client = client.clone();
            let url = url.clone();
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .await
        .unwrap_or_else(|_| panic!("omni did not become ready; log:\n{}", self.log_text()));
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("omni not running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().unwrap()
    }

    /// Sends SIGTERM and returns at once; see [`Self::exited`].
    pub fn terminate(&self) {
        let c = self.child.as_ref().expect("omni not running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }

    /// Whether the process has exited (then it is reaped).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// Starts the server again on the same data dir.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "omni still running");
        self.spawn().await;
    }

    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// Runs omnictl against this server with the admin token.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_as(&self.token, args)
    }

    pub fn ctl_as(&self, token: &str, args: &[&str]) -> Output {
        omnictl(&self.endpoint(), self.dir.path(), token, args)
    }

    /// omnictl that must succeed; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "omnictl {args:?} failed: {}\nserver log:\n{}",
            stderr(&out),
            self.log_text()
        );
        stdout(&out)
    }

    /// Writes `yaml` to a file and `omnictl apply -f` it.
    pub fn apply_yaml(&self, yaml: &str) -> Output {
        let path = self.write_file("apply.yaml", yaml);
        self.ctl(&["apply", "-f", path.to_str().unwrap()])
    }

    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The `/metrics` text, scraped with the admin token.
    pub async fn metrics_text(&self) -> String {
        reqwest::Client::new()
            .get(format!("{}/metrics", self.endpoint()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn client(&self) -> omni_client::Client {
        omni_client::Client::new(&self.endpoint(), Some(self.token.clone())).unwrap()
    }
}

impl Drop for Omni {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The spec of `cluster`'s EtcdBackupStatuses, or `null` while the backup
/// controller has not written it yet.
pub fn backup_status(omni: &Omni, cluster: &str) -> serde_json::Value {
    let out = omni.ctl(&["get", "etcdbackupstatus", cluster, "-o", "json"]);
    if !out.status.success() {
        assert!(stderr(&out).contains("doesn't exist"), "{}", stderr(&out));
        return serde_json::Value::Null;
    }
    serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["spec"].clone()
}

/// Incompressible bytes, so stored backups are as large as the db and
/// take long enough to interrupt.
#[allow(unused_imports)] // not every test binary uses it
pub use omni_testkit::noise;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Polls `f` until it returns `Some`, or panics with `what` after [`WAIT`].
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// YAML registering `machines` as control-plane (or worker) members of `cluster`.
pub fn machines_yaml(cluster: &str, machines: &[(String, String)], controlplane: bool) -> String {
    let role = if controlplane {
        "omni.sidero.dev/role-controlplane"
    } else {
        "omni.sidero.dev/role-worker"
    };
    let set = if controlplane {
        "control-planes"
    } else {
        "workers"
    };
    let mut out = String::new();
    for (uuid, url) in machines {
        out.push_str(&format!(
            "metadata:\n  namespace: default\n  type: Machines.omni.sidero.dev\n  id: {uuid}\nspec:\n  etcdendpoints:\n    - {url}\n---\n\
             metadata:\n  namespace: default\n  type: MachineSetNodes.omni.sidero.dev\n  id: {uuid}\n  labels:\n    omni.sidero.dev/cluster: {cluster}\n    omni.sidero.dev/machine-set: {cluster}-{set}\n    {role}: \"\"\nspec: {{}}\n---\n"
        ));
    }
    out
}

/// Registers every member of `etcd` (as machines `m0`, `m1`, …) in the
/// control plane of `cluster`.
pub fn register_members(omni: &Omni, cluster: &str, etcd: &omni_testkit::EtcdCluster) {
    let machines: Vec<(String, String)> = etcd
        .members()
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i}"), m.client_url()))
        .collect();
    let out = omni.apply_yaml(&machines_yaml(cluster, &machines, true));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Creates cluster `name` with an empty spec.
pub fn create_cluster(omni: &Omni, name: &str) {
    let out = omni.apply_yaml(&format!(
        "metadata:\n  type: cluster\n  id: {name}\nspec: {{}}\n"
    ));
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs omnictl against `endpoint` with `token`, its config kept under
/// `home` so that no test reads the user's own.
pub fn omnictl(endpoint: &str, home: &Path, token: &str, args: &[&str]) -> Output {
    Command::new(omnictl_bin())
        .args(args)
        .env("OMNICTL_ENDPOINT", endpoint)
        .env("OMNICTL_TOKEN", token)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
