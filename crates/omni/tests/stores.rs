//! Several named stores end to end, against real etcd and two real s3s-fs
//! servers: backups go to the cluster's store and are copied to its
//! secondary (the secondary killed mid-copy, then restarted: the copy
//! completes by itself and nothing half-copied is ever listed), listing
//! says where each backup is, and download and verify fall back to the
//! other copy when one is damaged or missing. A copy that keeps failing
//! is announced to an alert receiver, and resolved once it succeeds.

mod common;
mod receiver;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::slow_proxy::slow_proxy;
use common::*;
use omni_testkit::{EtcdCluster, S3Server};
use receiver::{receiver_yaml, Inbox};
use serde_json::Value;

fn s3_store_yaml(name: &str, s3: &S3Server) -> String {
    s3_store_yaml_via(name, s3, &s3.endpoint())
}

/// The store `name` on `s3`, reached at `endpoint` (a proxy in front of it).
fn s3_store_yaml_via(name: &str, s3: &S3Server, endpoint: &str) -> String {
    format!(
        "metadata:\n  type: EtcdBackupStores.omni.sidero.dev\n  id: {name}\nspec:\n  s3:\n    bucket: {}\n    endpoint: {endpoint}\n    accesskeyid: {}\n    secretaccesskey: {}\n",
        s3.bucket(),
        s3.access_key(),
        s3.secret_key()
    )
}

fn local_store_yaml(name: &str, dir: &Path) -> String {
    format!(
        "metadata:\n  type: etcdbackupstore\n  id: {name}\nspec:\n  local:\n    path: {}\n",
        dir.display()
    )
}

fn cluster_yaml(name: &str, conf: &str) -> String {
    format!("metadata:\n  type: cluster\n  id: {name}\nspec:\n  backupconfiguration:\n{conf}")
}

/// `(id, stores)` of the cluster's backups, newest first.
fn backups(omni: &Omni, cluster: &str) -> Vec<(String, Vec<String>)> {
    let selector = format!("omni.sidero.dev/cluster={cluster}");
    let out = omni.ctl_ok(&["get", "etcdbackup", "--selector", &selector, "-o", "json"]);
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .map(|v| {
            let v = v.unwrap();
            let stores = v["spec"]["stores"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            (v["metadata"]["id"].as_str().unwrap().to_string(), stores)
        })
        .collect()
}

fn copy_status(omni: &Omni, cluster: &str) -> Value {
    let out = omni.ctl(&["get", "etcdbackupcopystatus", cluster, "-o", "json"]);
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_str::<Value>(&stdout(&out)).unwrap()["spec"].clone()
}

/// Requests a backup and waits until it is stored; returns its id.
async fn backup_now(omni: &Omni, cluster: &str) -> String {
    // One backup per second: ids are unix seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let at = now();
    let req = format!(
        "metadata:\n  type: etcdmanualbackup\n  id: {cluster}\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n"
    );
    let out = omni.apply_yaml(&req);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the requested backup", || {
        let s = backup_status(omni, cluster);
        (s["status"] == 1 && s["lastbackuptime"]["seconds"].as_i64() >= Some(at)).then_some(())
    })
    .await;
    backups(omni, cluster).remove(0).0
}

/// Backup objects under `root`, newest first (keys invert the time).
fn objects(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for d in dirs.flatten().filter(|d| d.path().is_dir()) {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "snapshot") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

fn download(omni: &Omni, cluster: &str, id: &str, out: &Path) -> std::process::Output {
    omni.ctl(&[
        "etcd-backup",
        "download",
        "--cluster",
        cluster,
        "--snapshot",
        id,
        "-o",
        path_str(out),
    ])
}

async fn verify_json(omni: &Omni, id: &str) -> Value {
    let url = format!("{}/api/v1/etcd-backups/{id}/verify", omni.endpoint());
    reqwest::Client::new()
        .get(url)
        .bearer_auth(&omni.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_survive_a_killed_secondary_and_reads_fall_back() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    // Incompressible values: each object is ~15 MB, so a copy takes long
    // enough to be cut.
    for i in 0..24u64 {
        etcd.put(format!("/big/{i}"), noise(i, 1024 * 1024))
            .await
            .unwrap();
    }
    let mut main = S3Server::start().await.unwrap();
    let mut offsite = S3Server::start().await.unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-retry-backoff",
        "1s",
    ])
    .await;
    // The secondary sits behind a proxy that can slow uploads, so that a
    // copy is still running when the secondary is stopped.
    let upload_delay_ms = Arc::new(AtomicU64::new(0));
    let offsite_port = slow_proxy(offsite.port(), upload_delay_ms.clone()).await;
    let offsite_endpoint = format!("http://127.0.0.1:{offsite_port}");
    let out = omni.apply_yaml(&s3_store_yaml("main", &main));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = omni.apply_yaml(&s3_store_yaml_via("offsite", &offsite, &offsite_endpoint));
    assert!(out.status.success(), "{}", stderr(&out));
    register_members(&omni, "c", &etcd);
    let out = omni.apply_yaml(&cluster_yaml(
        "c",
        "    store: main\n    secondarystore: offsite\n",
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let inbox = Inbox::serve(hook).await;
    let out = omni.apply_yaml(&receiver_yaml(
        "copies",
        "webhook",
        &hook_url,
        "  events: [copy-failed]\n",
    ));
    assert!(out.status.success(), "{}", stderr(&out));

    // 1. A backup lands in the primary, then its copy in the secondary.
    let first = backup_now(&omni, "c").await;
    eventually("the first copy", || {
        let b = backups(&omni, "c");
        (b.len() == 1 && b[0].1 == ["main", "offsite"]).then_some(())
    })
    .await;
    let st = copy_status(&omni, "c");
    assert_eq!(st["status"], 1, "{st}");
    assert_eq!(
        (st["store"].as_str(), st["secondarystore"].as_str()),
        (Some("main"), Some("offsite"))
    );
    assert_eq!(objects(&main.bucket_dir()).len(), 1);
    assert_eq!(objects(&offsite.bucket_dir()).len(), 1);
    // Byte for byte: the copy is the stored object, not a second encryption.
    assert_eq!(
        std::fs::read(&objects(&main.bucket_dir())[0]).unwrap(),
        std::fs::read(&objects(&offsite.bucket_dir())[0]).unwrap()
    );
    // The default store (the server's own) holds nothing of this cluster.
    assert!(objects(&omni.data_dir().join("backups")).is_empty());

    // 2. The secondary dies in the middle of a copy, slowed to take
    // seconds; should it finish first all the same, try again.
    upload_delay_ms.store(10, Ordering::SeqCst);
    let mut cut = None;
    for _ in 0..5 {
        let id = backup_now(&omni, "c").await;
        let running = eventually("the copy to start or end", || {
            let s = copy_status(&omni, "c");
            if s["backup"] != id.as_str() {
                return None;
            }
            match s["status"].as_i64() {
                Some(3) => Some(true),
                Some(1) => Some(false),
                _ => None,
            }
        })
        .await;
        if !running {
            continue;
        }
        offsite.stop();
        let st = eventually("the cut copy to fail", || {
            let s = copy_status(&omni, "c");
            (s["status"] != 3).then_some(s)
        })
        .await;
        if st["status"] == 1 {
            offsite.restart().await.unwrap();
            continue;
        }
        assert_eq!(st["status"], 2, "{st}");
        assert!(st["error"].as_str().unwrap().contains("offsite"), "{st}");
        eprintln!("mid-copy failure reads: {}", st["error"]);
        cut = Some(id);
        break;
    }
    let cut = cut.expect("never managed to stop the secondary during a copy");
    // Nothing half-copied is listed: the cut backup is only in the primary.
    let listed = backups(&omni, "c");
    assert_eq!(
        listed[0],
        (cut.clone(), vec!["main".to_string()]),
        "{listed:?}"
    );
    // Retries keep failing while it is down, and say so.
    let st = eventually("a retry to fail too", || {
        let s = copy_status(&omni, "c");
        (s["status"] == 2 && s["attempts"].as_u64() >= Some(2)).then_some(s)
    })
    .await;
    assert!(st["pending"].as_u64() >= Some(1), "{st}");
    // The receiver is told, once, naming the cluster and the store.
    let firing = eventually("the copy-failed alert", || {
        inbox
            .webhook("/hook", "copy-failed", "firing")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(firing.body["cluster"], "c", "{:?}", firing.body);
    assert!(
        firing.body["summary"]
            .as_str()
            .is_some_and(|t| t.contains("offsite")),
        "{:?}",
        firing.body
    );

    // 3. Back up: the copy completes by itself.
    upload_delay_ms.store(0, Ordering::SeqCst);
    offsite.restart().await.unwrap();
    eventually("every backup copied after the restart", || {
        let b = backups(&omni, "c");
        b.iter()
            .all(|(_, s)| s == &["main", "offsite"])
            .then_some(())
    })
    .await;
    let st = copy_status(&omni, "c");
    assert_eq!(
        (st["status"].as_i64(), st["error"].as_str()),
        (Some(1), Some("")),
        "{st}"
    );
    eventually("the copy-failed alert resolved", || {
        (!inbox.webhook("/hook", "copy-failed", "resolved").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        inbox.webhook("/hook", "copy-failed", "firing").len(),
        1,
        "{:?}",
        inbox.all()
    );
    // 3b. omni itself is killed during a copy: the restarted server makes
    // it again by itself.
    let mut omni = omni;
    let id = backup_now(&omni, "c").await;
    let running = eventually("the copy to start or end", || {
        let s = copy_status(&omni, "c");
        (s["backup"] == id.as_str() && (s["status"] == 3 || s["status"] == 1))
            .then(|| s["status"] == 3)
    })
    .await;
    omni.kill9();
    eprintln!("omni killed with the copy of {id} running: {running}");
    omni.start_again().await;
    eventually("the copy redone after the restart", || {
        let b = backups(&omni, "c");
        (b[0].0 == id && b.iter().all(|(_, s)| s == &["main", "offsite"])).then_some(())
    })
    .await;
    let n = backups(&omni, "c").len();
    assert_eq!(objects(&offsite.bucket_dir()).len(), n);

    // For the record (not asserted): a download of a backup with two copies
    // checks the primary's first, so it costs about one verify more.
    let newest = backups(&omni, "c").remove(0).0;
    let out = omni.dir.path().join("timed.db");
    let clock = std::time::Instant::now();
    assert!(verify_json(&omni, &newest).await["ok"] == true);
    let verify_took = clock.elapsed();
    let clock = std::time::Instant::now();
    assert!(download(&omni, "c", &newest, &out).status.success());
    eprintln!(
        "two copies: verify {verify_took:?}, download {:?}",
        clock.elapsed()
    );
    std::fs::remove_file(&out).unwrap();

    // 4. The primary's copy of the newest backup is damaged in place (same
    // size): download and verify read the secondary's instead.
    let damaged = objects(&main.bucket_dir()).remove(0);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let v = verify_json(&omni, &newest).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["store"], "offsite", "{v}");
    assert_eq!(v["failedcopies"][0]["store"], "main", "{v}");
    let o = omni.ctl(&[
        "etcd-backup",
        "verify",
        "--cluster",
        "c",
        "--snapshot",
        &newest,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("is intact"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("the copy in store \"main\" failed its check")
            && err.contains("the copy in store \"offsite\" is intact"),
        "{err}"
    );
    let out = omni.dir.path().join("newest.db");
    let o = download(&omni, "c", &newest, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let snap = std::fs::metadata(&out).unwrap().len();
    assert!(snap > 20 * 1024 * 1024, "{snap}");
    assert!(
        omni.log_text()
            .contains("reading the backup from its secondary copy"),
        "the log does not say which copy was read"
    );
    std::fs::remove_file(&out).unwrap();

    // 5. The primary's copy of the first backup is gone: it still lists
    // (from the secondary) and downloads.
    let gone = objects(&main.bucket_dir()).pop().unwrap();
    std::fs::remove_file(&gone).unwrap();
    let listed = backups(&omni, "c");
    let entry = listed.iter().find(|(id, _)| *id == first).unwrap();
    assert_eq!(entry.1, ["offsite"], "{listed:?}");
    let o = download(&omni, "c", &first, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&out).unwrap();

    // 6. Deleting a backup deletes every copy.
    let out = omni.ctl(&["delete", "etcdbackup", &newest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!backups(&omni, "c").iter().any(|(id, _)| *id == newest));
    assert_eq!(objects(&offsite.bucket_dir()).len(), n - 1);
    // The copier does not resurrect it (the primary's copy went too).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(objects(&offsite.bucket_dir()).len(), n - 1);

    // 7. The primary store is down: listing and download use the secondary.
    main.stop();
    let listed = backups(&omni, "c");
    assert_eq!(listed.len(), n - 1, "{listed:?}");
    assert!(listed.iter().all(|(_, s)| s == &["offsite"]), "{listed:?}");
    let file = omni.dir.path().join("from-secondary.db");
    let o = download(&omni, "c", &listed[0].0, &file);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&file).unwrap();
    main.restart().await.unwrap();

    // For the record: what the copies took (not asserted).
    let log = omni.log_text();
    for line in log.lines().filter(|l| l.contains("backup copied")) {
        eprintln!("{line}");
    }
    // No secret in the log.
    assert!(!log.contains(main.secret_key()) && !log.contains(offsite.secret_key()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_cluster_stores_default_secondary_validation_and_redaction() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let s3 = S3Server::start().await.unwrap();
    let offsite = tempfile::tempdir().unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-retry-backoff",
        "1s",
        "--etcd-backup-secondary-store",
        "offsite",
    ])
    .await;

    // Validation names the field and stores nothing.
    for (yaml, field) in [
        (local_store_yaml("rel", Path::new("relative/dir")), "spec.local.path"),
        (
            s3_store_yaml("nobucket", &s3).replace(&format!("bucket: {}", s3.bucket()), "region: x"),
            "spec.s3.bucket",
        ),
        (
            s3_store_yaml("badsecret", &s3).replace(s3.secret_key(), "wrong-secret-0123"),
            "incorrect settings for s3 client",
        ),
        (local_store_yaml("default", offsite.path()), "metadata.id"),
        (
            "metadata:\n  type: etcdbackupstore\n  id: both\nspec:\n  local:\n    path: /tmp/x\n  s3:\n    bucket: b\n".to_string(),
            "mutually exclusive",
        ),
    ] {
        let out = omni.apply_yaml(&yaml);
        assert!(!out.status.success(), "accepted: {yaml}");
        let err = stderr(&out);
        assert!(err.contains(field), "{field} not in: {err}");
        assert!(!err.contains("wrong-secret-0123"), "{err}");
    }
    let listed = omni.ctl_ok(&["get", "etcdbackupstores"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");

    // Only admins write stores; below admin the secrets are redacted.
    let operator = omni.ctl_ok(&["token", "create", "--role", "operator"]);
    let path = omni.write_file("store.yaml", &s3_store_yaml("sneaky", &s3));
    let out = omni.ctl_as(operator.trim(), &["apply", "-f", path_str(&path)]);
    assert!(!out.status.success(), "an operator wrote a store");
    assert!(stderr(&out).contains("backup store"), "{}", stderr(&out));
    for yaml in [
        s3_store_yaml("bucket", &s3),
        local_store_yaml("offsite", offsite.path()),
    ] {
        let out = omni.apply_yaml(&yaml);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let seen = stdout(&omni.ctl_as(
        operator.trim(),
        &["get", "etcdbackupstore", "bucket", "-o", "yaml"],
    ));
    assert!(seen.contains("secretaccesskey: <redacted>"), "{seen}");
    assert!(seen.contains(&format!("bucket: {}", s3.bucket())), "{seen}");
    assert!(!seen.contains(s3.secret_key()), "{seen}");
    let admin = omni.ctl_ok(&["get", "etcdbackupstore", "bucket", "-o", "yaml"]);
    assert!(admin.contains(s3.secret_key()), "{admin}");

    // A cluster name that is not a store name, or the secondary equal to
    // the primary, is refused by field.
    for (conf, field) in [
        ("    store: a/b\n", "spec.backupconfiguration.store"),
        (
            "    store: bucket\n    secondarystore: bucket\n",
            "spec.backupconfiguration.secondarystore",
        ),
    ] {
        let out = omni.apply_yaml(&cluster_yaml("bad", conf));
        assert!(!out.status.success(), "accepted: {conf}");
        assert!(stderr(&out).contains(field), "{}", stderr(&out));
    }

    // c1 keeps the server's store; c2 chooses the S3 one. Both get copies in
    // the server-wide secondary; c3 names a store that does not exist.
    let url = etcd.members()[0].client_url();
    for (cluster, machine) in [("c1", "m1"), ("c2", "m2"), ("c3", "m3")] {
        let yaml = machines_yaml(cluster, &[(machine.to_string(), url.clone())], true);
        assert!(omni.apply_yaml(&yaml).status.success());
    }
    create_cluster(&omni, "c1");
    for (cluster, conf) in [("c2", "    store: bucket\n"), ("c3", "    store: nosuch\n")] {
        let out = omni.apply_yaml(&cluster_yaml(cluster, conf));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    backup_now(&omni, "c1").await;
    backup_now(&omni, "c2").await;
    for (cluster, primary) in [("c1", "default"), ("c2", "bucket")] {
        eventually(&format!("{cluster}'s copy"), || {
            let b = backups(&omni, cluster);
            (b.len() == 1 && b[0].1 == [primary, "offsite"]).then_some(())
        })
        .await;
    }
    assert_eq!(
        objects(&omni.data_dir().join("backups")).len(),
        1,
        "c1 only"
    );
    assert_eq!(objects(&s3.bucket_dir()).len(), 1, "c2 only");
    assert_eq!(objects(offsite.path()).len(), 2, "both copies");

    let at = now();
    let req = format!(
        "metadata:\n  type: etcdmanualbackup\n  id: c3\nspec:\n  backupat:\n    seconds: {at}\n"
    );
    assert!(omni.apply_yaml(&req).status.success());
    let st = eventually("c3's error", || {
        let s = backup_status(&omni, "c3");
        (s["status"] == 2).then_some(s)
    })
    .await;
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("backup store \"nosuch\" does not exist"),
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_per_store_and_drills_fall_back_to_the_secondary() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..20 {
        etcd.put(format!("/k/{i}"), format!("v{i}")).await.unwrap();
    }
    let bins = omni_testkit::etcd_bins().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let offsite = dir.path().join("offsite");
    let omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-retry-backoff",
        "1s",
        "--etcd-bin",
        path_str(&bins.etcd),
        "--etcdutl-bin",
        path_str(&bins.etcdutl),
        "--etcd-backup-drill-dir",
        path_str(&dir.path().join("drills")),
    ])
    .await;
    let out = omni.apply_yaml(&local_store_yaml("offsite", &offsite));
    assert!(out.status.success(), "{}", stderr(&out));
    register_members(&omni, "c", &etcd);
    let conf = "    secondarystore: offsite\n    keeplast: 2\n";
    assert!(omni.apply_yaml(&cluster_yaml("c", conf)).status.success());

    // Three backups, keep the last two: in each store.
    for _ in 0..3 {
        backup_now(&omni, "c").await;
    }
    let primary = omni.data_dir().join("backups");
    eventually("two backups in each store", || {
        let b = backups(&omni, "c");
        (objects(&primary).len() == 2
            && objects(&offsite).len() == 2
            && b.len() == 2
            && b.iter().all(|(_, s)| s == &["default", "offsite"]))
        .then_some(())
    })
    .await;

    // The primary's newest copy is damaged; the drill restores the secondary's.
    let newest = backups(&omni, "c").remove(0).0;
    let object = objects(&primary).remove(0);
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();
    let with_drill = format!("{conf}    restoredrill: true\n");
    assert!(omni
        .apply_yaml(&cluster_yaml("c", &with_drill))
        .status
        .success());
    let st = eventually("the drill", || {
        let out = omni.ctl(&["get", "etcdbackupdrillstatus", "c", "-o", "json"]);
        let s = serde_json::from_str::<Value>(&stdout(&out)).ok()?["spec"].clone();
        (s["backup"] == newest.as_str() && (s["status"] == 1 || s["status"] == 2)).then_some(s)
    })
    .await;
    assert_eq!(st["status"], 1, "{st}");
    assert_eq!(st["store"], "offsite", "{st}");
    assert_eq!(st["keys"], 20, "{st}");

    // A copy cut short by a killed server leaves a temp file in a named
    // local store (never listed); the next start removes it.
    let cluster_dir = objects(&offsite)[0].parent().unwrap().to_path_buf();
    let temp = cluster_dir.join(".tmp-cutcopy.partial");
    std::fs::write(&temp, b"half a copy").unwrap();
    let mut omni = omni;
    omni.kill9();
    omni.start_again().await;
    eventually("the temp file removed", || (!temp.exists()).then_some(())).await;
    assert_eq!(backups(&omni, "c").len(), 2);
}
