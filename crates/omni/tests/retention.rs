//! Retention end to end, with real etcd, S3 and the real binaries: a series
//! of real backups taken at injected times (2031, so after the manual ones
//! of today), a dry run that names exactly what the policy deletes, the
//! controller deleting exactly that (never the newest, never a backup marked
//! to keep), the server default for a cluster without a policy, and
//! deleting a backup by hand (admin yes, operator no).

mod common;
mod ops;

use std::collections::BTreeSet;

use common::*;
use omni_backup::{parse_recipient, take_backup, BackupStore, MemberEndpoint, S3Settings};
use omni_resources::retention::days_from_civil;
use omni_testkit::{EtcdCluster, S3Server};
use ops::*;

/// Unix seconds of a 2031 UTC date and hour.
fn t(month: u32, day: u32, hour: i64) -> i64 {
    days_from_civil(2031, month, day) * 86_400 + hour * 3_600
}

/// Takes a real backup of `etcd` for `cluster` at each of `times`, straight
/// into the S3 bucket omni uses, with the cluster's identity and prefix.
async fn inject(omni: &Omni, s3: &S3Server, etcd: &EtcdCluster, cluster: &str, times: &[i64]) {
    let data = eventually(&format!("backup data of {cluster}"), || {
        spec(omni, "backupdata", cluster).filter(|s| s["clusteruuid"] != "")
    })
    .await;
    let store = BackupStore::s3(&S3Settings {
        bucket: s3.bucket().into(),
        region: s3.region().into(),
        endpoint: Some(s3.endpoint()),
        access_key_id: Some(s3.access_key().into()),
        secret_access_key: Some(s3.secret_key().into()),
        session_token: None,
    })
    .unwrap();
    let recipient = parse_recipient(data["agerecipient"].as_str().unwrap()).unwrap();
    let members = [MemberEndpoint {
        name: "m0".into(),
        urls: etcd.client_urls(),
        tls: None,
    }];
    for at in times {
        let uuid = data["clusteruuid"].as_str().unwrap();
        take_backup(&members, &store, uuid, &recipient, *at)
            .await
            .unwrap();
    }
}

fn ids(cluster: &str, times: &[i64]) -> BTreeSet<String> {
    times.iter().map(|t| format!("{cluster}-{t}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_exactly_what_the_policy_says() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..10 {
        etcd.put(format!("/k{i}"), "v").await.unwrap();
    }
    let s3 = S3Server::start().await.unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-s3",
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-retention-interval",
        "1s",
        "--etcd-backup-keep-last",
        "2",
    ])
    .await;
    configure_s3(&omni, &s3).await;
    register_machines(&omni, &etcd, "gfs");
    register_machines(&omni, &etcd, "dflt");

    // Field-named validation.
    let out = apply_cluster(&omni, "gfs", "    keeplast: -1\n");
    assert!(
        stderr(&out).contains("spec.backupconfiguration.keeplast: must not be negative"),
        "{}",
        stderr(&out)
    );
    let out = apply_cluster(&omni, "gfs", "    keepmonthly: 99999\n");
    assert!(
        stderr(&out).contains("spec.backupconfiguration.keepmonthly: must be at most 10000"),
        "{}",
        stderr(&out)
    );

    // A policy that keeps all, while the series is made.
    assert!(apply_cluster(&omni, "gfs", "    keeplast: 1000\n")
        .status
        .success());
    manual_backup(&omni, "gfs", false).await;
    manual_backup(&omni, "gfs", true).await;
    let manual = backup_ids(&omni, "gfs");
    assert_eq!(manual.len(), 2, "{manual:?}");
    let (kept_manual, plain_manual) = (manual[0].clone(), manual[1].clone());
    eventually("the keep mark", || {
        let st = spec(&omni, "etcdbackupretentionstatus", "gfs")?;
        (st["kept"] == serde_json::json!([kept_manual])).then_some(())
    })
    .await;

    // 2031-01-01 is a Wednesday; Feb 3-9 and Feb 10-16 are ISO weeks 6, 7.
    let series = [
        t(1, 10, 12),
        t(1, 20, 12),
        t(1, 31, 6),
        t(1, 31, 18),
        t(2, 3, 9),
        t(2, 5, 9),
        t(2, 9, 9),
        t(2, 9, 21),
        t(2, 10, 8),
        t(2, 11, 8),
        t(2, 11, 20),
        t(2, 12, 8),
        t(2, 12, 14),
        t(2, 12, 20),
    ];
    inject(&omni, &s3, &etcd, "gfs", &series).await;
    assert_eq!(backup_ids(&omni, "gfs").len(), 16);

    // By hand: last 2 (Feb 12 20h, 14h); daily 3 (Feb 12, 11, 10: their
    // newest); weekly 2 (W07: Feb 12 20h, W06: Feb 9 21h); monthly 2 (Feb:
    // Feb 12 20h, Jan: Jan 31 18h); and the backup marked to keep.
    let mut kept = ids(
        "gfs",
        &[
            t(2, 12, 20),
            t(2, 12, 14),
            t(2, 11, 20),
            t(2, 10, 8),
            t(2, 9, 21),
            t(1, 31, 18),
        ],
    );
    kept.insert(kept_manual.clone());
    let mut deleted = ids(
        "gfs",
        &[
            t(2, 12, 8),
            t(2, 11, 8),
            t(2, 9, 9),
            t(2, 5, 9),
            t(2, 3, 9),
            t(1, 31, 6),
            t(1, 20, 12),
            t(1, 10, 12),
        ],
    );
    deleted.insert(plain_manual.clone());

    // The dry run names exactly those, deletes nothing.
    let out = omni.ctl_ok(&[
        "etcd-backup",
        "retention",
        "--cluster",
        "gfs",
        "--keep-last",
        "2",
        "--keep-daily",
        "3",
        "--keep-weekly",
        "2",
        "--keep-monthly",
        "2",
    ]);
    let verdict = |action: &str| -> BTreeSet<String> {
        out.lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(action))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(verdict("delete"), deleted, "{out}");
    assert_eq!(verdict("keep"), kept, "{out}");
    assert!(
        out.contains("16 backups: 7 kept, 9 would be deleted"),
        "{out}"
    );
    let line = |id: &str| out.lines().find(|l| l.starts_with(id)).unwrap().to_string();
    assert!(line(&kept_manual).ends_with("marked to keep"), "{out}");
    assert!(
        line(&format!("gfs-{}", t(2, 9, 21))).contains("weekly 2031-W06"),
        "{out}"
    );
    assert!(
        line(&format!("gfs-{}", t(2, 12, 20))).contains("newest"),
        "{out}"
    );
    assert_eq!(backup_ids(&omni, "gfs").len(), 16);

    // The policy for real: the controller deletes exactly the same.
    let policy = "    keeplast: 2\n    keepdaily: 3\n    keepweekly: 2\n    keepmonthly: 2\n";
    assert!(apply_cluster(&omni, "gfs", policy).status.success());
    let left = eventually("retention applied", || {
        let left: BTreeSet<String> = backup_ids(&omni, "gfs").into_iter().collect();
        (left.len() == 7).then_some(left)
    })
    .await;
    assert_eq!(left, kept);
    let st = eventually("the status of the run", || {
        spec(&omni, "etcdbackupretentionstatus", "gfs").filter(|s| s["deletedtotal"] == 9)
    })
    .await;
    let recorded: BTreeSet<String> = st["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(recorded, deleted);
    assert_eq!(
        st["summary"],
        "keep-last=2 keep-daily=3 keep-weekly=2 keep-monthly=2"
    );
    assert_eq!(st["policysource"], "cluster");
    let table = omni.ctl_ok(&["get", "etcdbackupretentionstatus", "gfs"]);
    assert!(
        table.contains("EtcdBackupRetentionStatus") && table.contains("keep-last=2"),
        "{table}"
    );

    // A cluster without a policy gets the server's: keep the last 2.
    assert!(apply_cluster(&omni, "dflt", "").status.success());
    let march = [t(3, 1, 0), t(3, 2, 0), t(3, 3, 0), t(3, 4, 0)];
    inject(&omni, &s3, &etcd, "dflt", &march).await;
    eventually("the server default applied", || {
        let left: BTreeSet<String> = backup_ids(&omni, "dflt").into_iter().collect();
        (left == ids("dflt", &march[2..])).then_some(())
    })
    .await;
    let st = spec(&omni, "etcdbackupretentionstatus", "dflt").unwrap();
    assert_eq!(
        (st["summary"].as_str(), st["policysource"].as_str()),
        (Some("keep-last=2"), Some("server"))
    );
    let out = omni.ctl_ok(&["etcd-backup", "retention", "--cluster", "dflt"]);
    assert!(
        out.contains("policy: keep-last=2 (the server default)"),
        "{out}"
    );
    assert!(
        out.contains("2 backups: 2 kept, 0 would be deleted"),
        "{out}"
    );

    // Deleting by hand: an operator may not, an admin may; a backup marked
    // to keep goes only this way, and its mark with it.
    let operator = omni.ctl_ok(&["token", "create", "--role", "operator"]);
    let out = omni.ctl_as(operator.trim(), &["delete", "etcdbackup", &kept_manual]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("requires the admin role; this token has operator"),
        "{}",
        stderr(&out)
    );
    assert!(backup_ids(&omni, "gfs").contains(&kept_manual));
    let out = omni.ctl_ok(&["delete", "etcdbackup", &kept_manual]);
    assert!(out.contains("destroyed"), "{out}");
    assert!(!backup_ids(&omni, "gfs").contains(&kept_manual));
    let out = omni.ctl(&["get", "etcdbackup", &kept_manual]);
    assert!(!out.status.success());
    eventually("the keep mark dropped", || {
        let st = spec(&omni, "etcdbackupretentionstatus", "gfs")?;
        (st["kept"] == serde_json::json!([])).then_some(())
    })
    .await;
    // The newest stays whatever happens.
    assert!(backup_ids(&omni, "gfs").contains(&format!("gfs-{}", t(2, 12, 20))));
}
