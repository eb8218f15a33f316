//! Cron schedules and drill schedules end to end, through the real `omni`
//! and `omnictl` against a real etcd: automatic backups at a schedule's
//! fire times, a drill on its own schedule without any new backup,
//! validation errors that name their field and change nothing, a
//! configuration without interval, and a template with a schedule.

mod common;
mod ops;

use common::*;
use omni_testkit::{etcd_bins, EtcdCluster};
use ops::*;

/// Unix seconds of each backup of `cluster`, oldest first.
fn backup_times(omni: &Omni, cluster: &str) -> Vec<i64> {
    let mut t: Vec<i64> = backup_ids(omni, cluster)
        .iter()
        .filter_map(|id| id.rsplit('-').next()?.parse().ok())
        .collect();
    t.sort();
    t
}

fn cluster_spec(omni: &Omni, name: &str) -> serde_json::Value {
    spec(omni, "cluster", name).expect("the cluster exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_backs_up_at_its_fire_times() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-min-interval",
        "1s",
        "--etcd-backup-jitter",
        "0s",
    ])
    .await;
    register_machines(&omni, &etcd, "c1");
    // Every 5 s, seconds first; the zone is accepted and changes nothing
    // for a pattern of seconds.
    let out = apply_cluster(
        &omni,
        "c1",
        "    schedule: \"*/5 * * * * *\"\n    timezone: Asia/Kolkata\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = &cluster_spec(&omni, "c1")["backupconfiguration"];
    assert_eq!(conf["schedule"], "*/5 * * * * *", "{conf}");
    assert_eq!(conf["timezone"], "Asia/Kolkata", "{conf}");
    assert!(conf.get("interval").is_none(), "{conf}");
    // The first backup at once, then two on fire times.
    let times = eventually("three automatic backups", || {
        let t = backup_times(&omni, "c1");
        (t.len() >= 3).then_some(t)
    })
    .await;
    for pair in times[1..].windows(2) {
        assert!(pair[1] - pair[0] >= 3, "runs too close: {times:?}");
    }
    for t in &times[1..] {
        // Started on a multiple of 5 s (a little later under load).
        assert!(t % 5 <= 2, "{t} is not on the schedule: {times:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_errors_name_their_field_and_change_nothing() {
    let omni = Omni::start(&[]).await;
    let out = apply_cluster(&omni, "c1", "    interval:\n      seconds: 3600\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let before = cluster_spec(&omni, "c1");
    let cases = [
        (
            "    schedule: \"0 */6 * *\"\n",
            "spec.backupconfiguration.schedule: invalid cron expression \"0 */6 * *\"",
        ),
        (
            "    interval:\n      seconds: 3600\n    schedule: \"@daily\"\n",
            "spec.backupconfiguration.interval and spec.backupconfiguration.schedule are mutually exclusive",
        ),
        (
            "    schedule: \"@daily\"\n    timezone: Mars/Base\n",
            "spec.backupconfiguration.timezone: unknown time zone \"Mars/Base\"",
        ),
        (
            "    schedule: \"*/10 * * * *\"\n",
            "fires 10m0s apart, more often than the minimum interval 1h0m0s",
        ),
        (
            "    schedule: \"0 0 * * 1\"\n",
            "leaves 168h0m0s between runs, longer than the maximum interval 24h0m0s",
        ),
        (
            "    restoredrill:\n      schedule: often\n",
            "spec.backupconfiguration.restoredrill.schedule: invalid cron expression",
        ),
        (
            "    restoredrill:\n      schedule: daily\n      interval:\n        seconds: 86400\n",
            "restoredrill.interval and spec.backupconfiguration.restoredrill.schedule are mutually exclusive",
        ),
    ];
    for (conf, want) in cases {
        let out = apply_cluster(&omni, "c1", conf);
        assert!(!out.status.success(), "accepted: {conf}");
        assert!(stderr(&out).contains(want), "{conf}: {}", stderr(&out));
        assert_eq!(
            cluster_spec(&omni, "c1"),
            before,
            "{conf} changed the cluster"
        );
    }

    // Refused last session: nothing but `restoredrill: false`.
    let out = apply_cluster(&omni, "c1", "    restoredrill: false\n");
    assert!(out.status.success(), "{}", stderr(&out));
    // The bool form renders back as written, the map form too.
    let out = apply_cluster(&omni, "c2", "    keeplast: 2\n    restoredrill: true\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = omni.ctl_ok(&["get", "cluster", "c2", "-o", "yaml"]);
    assert!(yaml.contains("restoredrill: true"), "{yaml}");
    let out = apply_cluster(
        &omni,
        "c3",
        "    schedule: \"0 */6 * * *\"\n    timezone: Europe/Berlin\n    restoredrill:\n      schedule: daily\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = &cluster_spec(&omni, "c3")["backupconfiguration"];
    assert_eq!(
        conf["restoredrill"],
        serde_json::json!({"schedule": "daily"})
    );
    assert_eq!(conf["schedule"], "0 */6 * * *");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_its_own_schedule_runs_without_a_new_backup() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..5 {
        etcd.put(format!("/d/{i}"), "v").await.unwrap();
    }
    let bins = etcd_bins().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-min-interval",
        "1s",
        "--etcd-backup-tick",
        "1s",
        "--etcd-bin",
        path_str(&bins.etcd),
        "--etcdutl-bin",
        path_str(&bins.etcdutl),
        "--etcd-backup-drill-dir",
        path_str(dir.path()),
    ])
    .await;
    register_machines(&omni, &etcd, "c1");
    // No automatic backups; drills every 3 s.
    let drill = "    restoredrill:\n      interval:\n        seconds: 3\n";
    let out = apply_cluster(&omni, "c1", drill);
    assert!(out.status.success(), "{}", stderr(&out));
    manual_backup(&omni, "c1", false).await;
    let backup = backup_ids(&omni, "c1").remove(0);
    let first = eventually("the first drill", || {
        let st = spec(&omni, "etcdbackupdrillstatus", "c1")?;
        (st["status"] == 1).then_some(st)
    })
    .await;
    assert_eq!(first["backup"], backup.as_str(), "{first}");
    assert_eq!(first["keys"], 5, "{first}");
    let started = first["startedat"]["seconds"].as_i64().unwrap();
    let again = eventually("a second drill of the same backup", || {
        let st = spec(&omni, "etcdbackupdrillstatus", "c1")?;
        let s = st["startedat"]["seconds"].as_i64()?;
        (s > started && st["status"] == 1).then_some(st)
    })
    .await;
    assert_eq!(again["backup"], backup.as_str(), "{again}");
    let gap = again["startedat"]["seconds"].as_i64().unwrap() - started;
    assert!(gap >= 3, "drilled {gap} s after the first");
    assert_eq!(backup_ids(&omni, "c1"), [backup], "no new backup was made");
}

const TEMPLATE: &str = "kind: Cluster
name: sched
kubernetes:
  version: v1.28.2
talos:
  version: v1.5.5
features:
  backupConfiguration:
    schedule: \"0 */6 * * *\"
    timezone: Europe/Berlin
    restoreDrill:
      schedule: weekly
---
kind: ControlPlane
machines:
  - 1dd4397b-37f1-4196-9c37-becef670b64a
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_with_a_schedule_validates_diffs_and_syncs() {
    let omni = Omni::start(&[]).await;
    let machine = "metadata:\n  type: Machines.omni.sidero.dev\n  id: 1dd4397b-37f1-4196-9c37-becef670b64a\nspec:\n  etcdendpoints: [http://127.0.0.1:9]\n";
    assert!(omni.apply_yaml(machine).status.success());
    let file = omni.write_file("sched.yaml", TEMPLATE);
    let t = |cmd: &str| omni.ctl(&["cluster", "template", "-f", path_str(&file), cmd]);
    let out = t("validate");
    assert!(out.status.success(), "{}", stderr(&out));
    let diff = stdout(&t("diff"));
    assert!(diff.contains("+    schedule: 0 */6 * * *"), "{diff}");
    assert!(diff.contains("+    timezone: Europe/Berlin"), "{diff}");
    assert!(diff.contains("+      schedule: weekly"), "{diff}");
    let out = t("sync");
    assert!(out.status.success(), "{}", stderr(&out));
    let conf = &cluster_spec(&omni, "sched")["backupconfiguration"];
    assert_eq!(conf["schedule"], "0 */6 * * *", "{conf}");
    assert_eq!(conf["timezone"], "Europe/Berlin", "{conf}");
    assert_eq!(
        conf["restoredrill"],
        serde_json::json!({"schedule": "weekly"})
    );
    assert_eq!(stdout(&t("diff")), "", "synced: nothing to change");

    // A bad pattern: the file alone says so, naming the template field.
    let bad = omni.write_file("bad.yaml", &TEMPLATE.replace("0 */6 * * *", "0 */6 * *"));
    let out = omni.ctl(&["cluster", "template", "-f", path_str(&bad), "validate"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("features.backupConfiguration.schedule: invalid cron expression"),
        "{}",
        stderr(&out)
    );
    // Too often for the server: sync is refused and nothing changes.
    let often = omni.write_file(
        "often.yaml",
        &TEMPLATE.replace("0 */6 * * *", "*/5 * * * *"),
    );
    let out = omni.ctl(&["cluster", "template", "-f", path_str(&often), "sync"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "spec.backupconfiguration.schedule: backup schedule \"*/5 * * * *\" fires 5m0s apart"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        cluster_spec(&omni, "sched")["backupconfiguration"]["schedule"],
        "0 */6 * * *"
    );
}
