//! docs/disaster-recovery.md, followed command for command: the shell
//! blocks are read from the document and run as written, with the
//! document's variables set for three members restored from one backup
//! taken to S3. The restored cluster must hold exactly the source's keys and
//! values, at the source's revision.

mod common;
mod ops;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;
use omni_testkit::{etcd_bins, free_port, EtcdCluster, S3Server};
use ops::*;

const DOC: &str = include_str!("../../../docs/disaster-recovery.md");

/// The shell block after `<!-- test: {name} -->` in the document.
fn block(name: &str) -> String {
    let marker = format!("<!-- test: {name} -->");
    let (_, after) = DOC
        .split_once(&marker)
        .unwrap_or_else(|| panic!("{marker} not in docs/disaster-recovery.md"));
    let body = after
        .trim_start()
        .strip_prefix("```shell\n")
        .unwrap_or_else(|| panic!("no shell block after {marker}"));
    body[..body.find("```").unwrap()].to_string()
}

/// A shell as an operator on a member host: omnictl, etcd, etcdctl and
/// etcdutl on PATH, the document's variables in the environment.
struct Host<'a> {
    omni: &'a Omni,
    token: String,
    path: String,
    cwd: PathBuf,
}

impl Host<'_> {
    fn command(&self, script: &str, vars: &[(&str, String)]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-ec")
            .arg(script)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("PATH", &self.path)
            .env("OMNICTL_ENDPOINT", self.omni.endpoint())
            .env("OMNICTL_TOKEN", &self.token)
            .env("HOME", self.omni.dir.path())
            .env("XDG_CONFIG_HOME", self.omni.dir.path().join("config"))
            .current_dir(&self.cwd)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, script: &str, vars: &[(&str, String)]) -> Output {
        let out = self.command(script, vars).output().unwrap();
        assert!(
            out.status.success(),
            "{script}\nfailed: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }
}

/// Member processes started from the document's block; killed on drop.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn all_keys(endpoints: &[String]) -> (BTreeMap<Vec<u8>, Vec<u8>>, i64) {
    let mut client = etcd_client::Client::connect(endpoints, None).await.unwrap();
    let resp = client
        .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect();
    (kvs, resp.header().unwrap().revision())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disaster_recovery_document_restores_three_members_from_one_backup() {
    // The source: puts, overwrites and deletes, so the revision is not the
    // key count and values differ from their first versions.
    let source = EtcdCluster::start(3).await.unwrap();
    let mut client = source.client().await.unwrap();
    for i in 0..120 {
        let v = format!("value-{i}-{}", "x".repeat(i % 17));
        client.put(format!("/dr/key{i:03}"), v, None).await.unwrap();
    }
    for i in (0..120).step_by(4) {
        client
            .put(format!("/dr/key{i:03}"), format!("second-{i}"), None)
            .await
            .unwrap();
    }
    for i in (1..120).step_by(10) {
        client.delete(format!("/dr/key{i:03}"), None).await.unwrap();
    }
    let (expected, source_revision) = all_keys(&source.client_urls()).await;
    assert_eq!(expected.len(), 108);

    let s3 = S3Server::start().await.unwrap();
    let omni = Omni::start(&["--etcd-backup-s3", "--etcd-backup-tick", "1s"]).await;
    configure_s3(&omni, &s3).await;
    register_machines(&omni, &source, "prod");
    assert!(apply_cluster(&omni, "prod", "").status.success());
    manual_backup(&omni, "prod", false).await;
    let backup = backup_ids(&omni, "prod").remove(0);
    // The disaster: the source cluster is gone.
    drop(source);

    let bins = etcd_bins().unwrap();
    let bin_dir = |p: &Path| p.parent().unwrap().display().to_string();
    let work = tempfile::tempdir().unwrap();
    let host = Host {
        omni: &omni,
        token: omni
            .ctl_ok(&["token", "create", "--role", "operator"])
            .trim()
            .to_string(),
        path: format!(
            "{}:{}:{}:{}",
            bin_dir(&omnictl_bin()),
            bin_dir(&bins.etcd),
            bin_dir(&bins.etcdutl),
            std::env::var("PATH").unwrap_or_default()
        ),
        cwd: work.path().to_path_buf(),
    };
    let members: Vec<(String, String, String, PathBuf)> = (0..3)
        .map(|i| {
            (
                format!("r{i}"),
                format!("http://127.0.0.1:{}", free_port().unwrap()),
                format!("http://127.0.0.1:{}", free_port().unwrap()),
                work.path().join(format!("hosts/r{i}/etcd-data")),
            )
        })
        .collect();
    let initial_cluster = members
        .iter()
        .map(|(n, peer, _, _)| format!("{n}={peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let endpoints: Vec<String> = members.iter().map(|m| m.2.clone()).collect();
    let vars = |i: usize| {
        let (name, peer, client, data) = &members[i];
        vec![
            ("CLUSTER", "prod".to_string()),
            ("BACKUP", backup.clone()),
            ("NAME", name.clone()),
            ("PEER_URL", peer.clone()),
            ("CLIENT_URL", client.clone()),
            ("DATA_DIR", data.display().to_string()),
            ("INITIAL_CLUSTER", initial_cluster.clone()),
            ("ENDPOINTS", endpoints.join(",")),
        ]
    };

    // 2. Pick one backup, and look at it.
    let listed = host.run(&block("list"), &vars(0));
    assert!(stdout(&listed).contains(&backup), "{}", stdout(&listed));
    let inspected = host.run(&block("inspect"), &vars(0));
    assert!(
        stdout(&inspected).contains("REVISION"),
        "{}",
        stdout(&inspected)
    );
    let status = bins
        .snapshot_status(&work.path().join(format!("{backup}.db")))
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(
        status["revision"].as_i64(),
        Some(source_revision),
        "{status}"
    );

    // 3. Restore every member from that backup.
    for (i, member) in members.iter().enumerate() {
        let out = host.run(&block("restore"), &vars(i));
        assert!(
            stdout(&out).contains(&format!("restored backup {backup}")),
            "{}",
            stdout(&out)
        );
        assert!(member.3.join("member").is_dir());
    }
    // The downloaded copies are gone.
    for (name, ..) in &members {
        let host_dir = work.path().join(format!("hosts/{name}"));
        let left: Vec<_> = std::fs::read_dir(&host_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec!["etcd-data".to_string()],
            "{}",
            host_dir.display()
        );
    }

    // 4. Start every member with the document's command.
    let mut running = Members(Vec::new());
    for i in 0..3 {
        let log = std::fs::File::create(work.path().join(format!("r{i}.log"))).unwrap();
        let child = host
            .command(&format!("exec {}", block("start")), &vars(i))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        running.0.push(child);
    }

    // 5. Check: healthy, then exactly the source's keys at its revision.
    eventually("the restored members healthy", || {
        host.command(&block("check"), &vars(0))
            .output()
            .unwrap()
            .status
            .success()
            .then_some(())
    })
    .await;
    let out = host.run(&block("check"), &vars(0));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(said.matches("is healthy").count(), 3, "{said}");
    // etcd 3.5's status table has no revision: the JSON line the document
    // adds shows the backup's revision for every member.
    assert_eq!(
        stdout(&out)
            .matches(&format!("\"revision\":{source_revision}\n"))
            .count(),
        3,
        "{said}"
    );
    for endpoint in &endpoints {
        let (got, revision) = all_keys(std::slice::from_ref(endpoint)).await;
        assert_eq!(got.len(), expected.len(), "{endpoint}");
        for (k, v) in &expected {
            assert_eq!(
                got.get(k),
                Some(v),
                "{endpoint}: key {}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(revision, source_revision, "{endpoint}");
    }

    // 6. The fresh backup's YAML, as the document gives it, is accepted.
    let out = host.run(&block("backup"), &vars(0));
    assert!(
        stdout(&out).contains("lastbackupattempt"),
        "{}",
        stdout(&out)
    );
    drop(running);
}

#[test]
fn restore_names_a_missing_etcdutl_and_touches_nothing() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let base = [
        "etcd-backup",
        "restore",
        "--cluster",
        "c",
        "--latest",
        "--data-dir",
        path_str(&data),
        "--name",
        "m0",
        "--initial-cluster",
        "m0=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:2380",
    ];
    let run = |extra: &[&str], path: &str| {
        Command::new(omnictl_bin())
            .args(base)
            .args(extra)
            .env("PATH", path)
            .env("OMNICTL_ENDPOINT", "http://127.0.0.1:1")
            .env("HOME", work.path())
            .output()
            .unwrap()
    };
    let out = run(&[], work.path().to_str().unwrap());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("etcdutl not found on PATH")
            && stderr(&out).contains("--etcdutl PATH"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--etcdutl", "/nonexistent/etcdutl"], "/usr/bin:/bin");
    assert!(
        stderr(&out).contains("--etcdutl /nonexistent/etcdutl: no such file"),
        "{}",
        stderr(&out)
    );
    assert!(!data.exists());
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}
