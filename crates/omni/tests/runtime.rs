//! The controller runtime as a user sees it: a new cluster's first backup
//! waits for its members instead of failing, workers need no etcd, and
//! SIGTERM neither hangs on open watches nor loses a running backup.

mod common;

use std::process::{Command, Stdio};

use common::*;
use omni_testkit::EtcdCluster;

const INTERRUPTED: &str = "backup interrupted: the server stopped while it was running";

fn cluster_with_interval(name: &str) -> String {
    format!(
        "metadata:\n  type: Clusters.omni.sidero.dev\n  id: {name}\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 3600\n      nanos: 0\n"
    )
}

fn worker_yaml(cluster: &str, id: &str) -> String {
    format!(
        "metadata:\n  type: Machines.omni.sidero.dev\n  id: {id}\nspec: {{}}\n---\n\
         metadata:\n  type: MachineSetNodes.omni.sidero.dev\n  id: {id}\n  labels:\n    omni.sidero.dev/cluster: {cluster}\n    omni.sidero.dev/machine-set: {cluster}-workers\n    omni.sidero.dev/role-worker: \"\"\nspec: {{}}\n"
    )
}

fn spec_of(omni: &Omni, kind: &str, id: &str) -> Option<serde_json::Value> {
    let out = omni.ctl(&["get", kind, id, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["spec"].clone())
}

/// Issue 10 f and i: a cluster created before its members (as a template
/// sync does) has its first automatic backup as soon as they exist, with
/// no error on the way; a worker without etcd registers and is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_backup_waits_for_members_and_workers_need_no_etcd() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    // A failed first attempt would be retried only after an hour: the
    // backup below must be the first attempt.
    let omni = Omni::start(&["--etcd-backup-retry-backoff", "1h"]).await;
    let out = omni.apply_yaml(&cluster_with_interval("early"));
    assert!(out.status.success(), "{}", stderr(&out));
    // The backup controller has looked at the cluster (its backup data is
    // there) and attempted nothing, so its status shows no error.
    eventually("the cluster is known to the backup controller", || {
        spec_of(&omni, "BackupDatas.omni.sidero.dev", "early")
    })
    .await;
    let st = backup_status(&omni, "early");
    assert!(
        st.is_null() || st["error"].as_str().unwrap_or("").is_empty(),
        "no member yet must not be an error: {st}"
    );

    let out = omni.apply_yaml(&worker_yaml("early", "w0"));
    assert!(
        out.status.success(),
        "a worker without etcd registers: {}",
        stderr(&out)
    );
    register_members(&omni, "early", &etcd);
    let st = eventually("first backup", || {
        let st = backup_status(&omni, "early");
        (st["status"] == 1).then_some(st)
    })
    .await;
    assert_eq!(st["error"].as_str().unwrap_or(""), "", "{st}");
    assert_eq!(
        st["lastbackupattempt"], st["lastbackuptime"],
        "first attempt succeeded: {st}"
    );

    let worker = eventually("worker ready", || {
        spec_of(&omni, "clustermachinestatus", "w0").filter(|s| s["ready"] == true)
    })
    .await;
    assert_eq!(worker["stage"], "running", "{worker}");
    assert!(
        spec_of(&omni, "machinestatus", "w0").is_none(),
        "a worker has no etcd member to probe"
    );
    let metrics = omni.metrics_text().await;
    assert!(
        metrics.contains("omni_controller_crashes_total{controller=\"EtcdBackupController\"} 0"),
        "{metrics}"
    );
}

/// SIGTERM with a `get --watch` open and a backup stuck on a member that
/// never answers: the watch ends, the backup is aborted at the drain
/// deadline and marked interrupted, and the server exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_and_marks_a_stuck_backup_interrupted() {
    // A member that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    let mut omni = Omni::start(&["--shutdown-timeout", "1s"]).await;
    let machines = vec![("m0".to_string(), url)];
    let out = omni.apply_yaml(&machines_yaml("stuck", &machines, true));
    assert!(out.status.success(), "{}", stderr(&out));
    create_cluster(&omni, "stuck");
    let mut watch = Command::new(omnictl_bin())
        .args(["get", "etcdbackupstatus", "--watch"])
        .env("OMNICTL_ENDPOINT", omni.endpoint())
        .env("OMNICTL_TOKEN", &omni.token)
        .env("HOME", omni.dir.path())
        .env("XDG_CONFIG_HOME", omni.dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = omni.apply_yaml(&format!(
        "metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: stuck\nspec:\n  backupat:\n    seconds: {}\n    nanos: 0\n",
        now()
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("backup running", || {
        (backup_status(&omni, "stuck")["status"] == 3).then_some(())
    })
    .await;
    assert!(watch.try_wait().unwrap().is_none(), "the watch is open");

    omni.terminate();
    eventually("omni exited", || omni.exited()).await;
    eventually("the watch ended", || watch.try_wait().unwrap()).await;
    assert!(
        omni.log_text().contains("backup aborted at shutdown"),
        "{}",
        omni.log_text()
    );
    omni.start_again().await;
    let st = backup_status(&omni, "stuck");
    assert_eq!(st["status"], 2, "{st}");
    assert_eq!(st["error"], INTERRUPTED, "{st}");
}
