//! One `omni` replica on a shared state etcd, for the HA tests: its own data
//! dir and loopback port, its log in the data dir's parent.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use omni_testkit::EtcdCluster;

use super::{omni_bin, omnictl, path_str, WAIT};

pub struct Replica {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Replica {
    /// Starts a replica on `state_etcd` under `prefix` with a 3 s lease,
    /// test-friendly backup timings (`extra` may add more flags), and waits
    /// until it is ready.
    pub async fn start(state_etcd: &EtcdCluster, prefix: &str, extra: &[&str]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = omni_testkit::free_port().unwrap();
        let log = std::fs::File::create(dir.path().join("omni.log")).unwrap();
        let child = Command::new(omni_bin())
            .args(["--data-dir", path_str(&dir.path().join("data"))])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--state", "etcd", "--state-etcd-prefix", prefix])
            .args([
                "--state-etcd-endpoints",
                &state_etcd.client_urls().join(","),
            ])
            .args(["--leader-lease-ttl", "3s", "--etcd-backup-tick", "1s"])
            .args([
                "--etcd-backup-min-interval",
                "2s",
                "--etcd-backup-jitter",
                "0s",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Replica {
            child: Some(child),
            dir,
            port,
        };
        let url = format!("{}/readyz", r.endpoint());
        let http = reqwest::Client::new();
        omni_testkit::wait_until(WAIT, || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
        .unwrap_or_else(|_| panic!("replica not ready:\n{}", r.log()));
        r
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin token the first replica wrote at its first start.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("omni.log")).unwrap_or_default()
    }

    pub fn ctl(&self, token: &str, args: &[&str]) -> Output {
        omnictl(&self.endpoint(), self.dir.path(), token, args)
    }

    pub fn apply(&self, token: &str, yaml: &str) -> Output {
        let path: PathBuf = self.dir.path().join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.ctl(token, &["apply", "-f", path_str(&path)])
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Replica {
    /// A replica left stopped (SIGSTOP) is woken first, so that it dies.
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.kill9();
    }
}
