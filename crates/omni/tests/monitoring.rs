//! Monitoring end to end: the shipped alert rules pass `promtool check
//! rules` and their unit tests; a live `/metrics` scrape of the real server
//! after real backups (real etcd, a real restore drill) passes `promtool
//! check metrics` and counts what happened; every metric the rules and the
//! Grafana dashboard use is served.

mod common;
mod ops;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use omni_testkit::{etcd_bins, EtcdCluster};
use ops::*;

/// promtool, or `None` (skip) outside CI when it is not installed.
fn promtool() -> Option<PathBuf> {
    match std::env::var_os("OMNI_TEST_PROMTOOL_BIN") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some() => {
            panic!("OMNI_TEST_PROMTOOL_BIN is unset under CI: run scripts/setup-test-deps.sh")
        }
        None => {
            eprintln!("SKIPPED: OMNI_TEST_PROMTOOL_BIN is unset (eval \"$(scripts/setup-test-deps.sh)\" sets it)");
            None
        }
    }
}

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let (ok, text) = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(deploy("prometheus/omni-alerts.yml")));
    println!("promtool check rules:\n{text}");
    assert!(ok && text.contains("SUCCESS"), "{text}");
    // The unit tests name the rules file relative to themselves.
    let (ok, text) = run(Command::new(&promtool)
        .current_dir(deploy("prometheus"))
        .args(["test", "rules", "omni-alerts.test.yml"]));
    println!("promtool test rules:\n{text}");
    assert!(ok && text.contains("SUCCESS"), "{text}");
}

async fn scrape(omni: &Omni, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new()
        .get(format!("{}/metrics", omni.endpoint()))
        .bearer_auth(&omni.token);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.text().await.unwrap())
}

/// The value of the sample `series` (name with its labels, as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}

/// `omni_*` metric names a rules file or dashboard refers to, as the
/// families they belong to (without a histogram's or counter's suffix).
fn referenced_families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("omni_") {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

fn served(text: &str, name: &str) -> bool {
    let family = ["_bucket", "_count", "_sum", "_total"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    text.lines().any(|l| {
        l.strip_prefix("# TYPE ").is_some_and(|t| {
            t.split(' ').next() == Some(name) || t.split(' ').next() == Some(family)
        })
    })
}

fn promtool_check_metrics(promtool: &PathBuf, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scrape_counts_backups_failures_and_drills() {
    let Some(promtool) = promtool() else { return };
    let etcd = EtcdCluster::start(1).await.unwrap();
    for i in 0..20 {
        etcd.put(format!("/m/{i}"), format!("v{i}")).await.unwrap();
    }
    let mut down = EtcdCluster::start(1).await.unwrap();
    let bins = etcd_bins().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let omni = Omni::start(&[
        "--etcd-backup-jitter",
        "0s",
        "--etcd-bin",
        path_str(&bins.etcd),
        "--etcdutl-bin",
        path_str(&bins.etcdutl),
        "--etcd-backup-drill-dir",
        path_str(&dir.path().join("drills")),
        "--etcd-backup-drill-timeout",
        "30s",
    ])
    .await;

    // An automatic first backup (interval 1h), drilled.
    register_machines(&omni, &etcd, "c1");
    let conf = "    interval:\n      seconds: 3600\n      nanos: 0\n    restoredrill: true\n";
    assert!(apply_cluster(&omni, "c1", conf).status.success());
    let first = eventually("the first automatic backup", || {
        spec(&omni, "etcdbackupstatus", "c1").filter(|s| s["status"] == 1)
    })
    .await;
    let (_, before) = scrape(&omni, None).await;
    let manual_count = r#"omni_etcd_backup_duration_seconds_count{trigger="manual"}"#;
    let auto_count = r#"omni_etcd_backup_duration_seconds_count{trigger="automatic"}"#;
    assert_eq!(must(&before, auto_count), 1.0, "{before}");
    let manual_before = must(&before, manual_count);
    let next_due = eventually("the next due time in the status", || {
        spec(&omni, "etcdbackupstatus", "c1").and_then(|s| s["nextbackuptime"]["seconds"].as_i64())
    })
    .await;
    let last = first["lastbackuptime"]["seconds"].as_i64().unwrap();
    assert_eq!(next_due, last + 3600, "interval 1h, no jitter: {first}");

    // One manual backup: its histogram counts exactly one more.
    manual_backup(&omni, "c1", false).await;
    let (_, after) = scrape(&omni, None).await;
    assert_eq!(must(&after, manual_count), manual_before + 1.0, "{after}");
    assert!(
        must(
            &after,
            r#"omni_etcd_backup_size_bytes_sum{trigger="manual"}"#
        ) > 0.0
    );
    assert!(
        must(
            &after,
            r#"omni_etcd_backup_throughput_bytes_per_second_count{trigger="manual"}"#
        ) >= 1.0
    );

    // The drill of the newest backup proves it restorable.
    let newest = backup_ids(&omni, "c1").remove(0);
    let newest_at: i64 = newest.rsplit('-').next().unwrap().parse().unwrap();
    // The status carries the newest backup's stored size, as listed.
    let listed = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=c1",
        "-o",
        "json",
    ]);
    let listed_size = serde_json::Deserializer::from_str(&listed)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .find(|b| b["metadata"]["id"] == newest.as_str())
        .map(|b| b["spec"]["size"].clone())
        .expect("the newest backup listed");
    assert!(listed_size.as_u64() > Some(0), "{listed_size}");
    let st = spec(&omni, "etcdbackupstatus", "c1").unwrap();
    assert_eq!(st["lastbackupsize"], listed_size, "{st}");
    let drill = eventually("a drill of the newest backup", || {
        spec(&omni, "etcdbackupdrillstatus", "c1")
            .filter(|s| s["backup"] == newest && s["status"] == 1)
    })
    .await;
    let st = eventually("the proof in the backup status", || {
        spec(&omni, "etcdbackupstatus", "c1")
            .filter(|s| s["lastprovenrestorable"]["seconds"].as_i64() == Some(newest_at))
    })
    .await;
    assert_eq!(st["lastdrillrestoreduration"], drill["duration"], "{st}");

    // A cluster whose etcd is down: its backup fails as source_unreachable.
    register_machines(&omni, &down, "c2");
    assert!(apply_cluster(&omni, "c2", "").status.success());
    down.stop_member(0).unwrap();
    let at = now();
    let out = omni.apply_yaml(&format!("metadata:\n  namespace: ephemeral\n  type: EtcdManualBackups.omni.sidero.dev\n  id: c2\nspec:\n  backupat:\n    seconds: {at}\n    nanos: 0\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the failed backup of c2", || {
        spec(&omni, "etcdbackupstatus", "c2").filter(|s| s["status"] == 2)
    })
    .await;

    let (content_type, text) = scrape(&omni, None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let unreachable =
        r#"omni_etcd_backup_failures_total{trigger="manual",reason="source_unreachable"}"#;
    assert_eq!(must(&text, unreachable), 1.0, "{text}");
    assert_eq!(
        must(
            &text,
            r#"omni_etcd_backup_failures_total{trigger="manual",reason="store_error"}"#
        ),
        0.0
    );
    assert_eq!(must(&text, r#"omni_etcd_backup_status{cluster="c2"}"#), 2.0);
    assert_eq!(must(&text, r#"omni_etcd_backup_status{cluster="c1"}"#), 1.0);
    assert_eq!(
        must(&text, r#"omni_etcd_backup_interval_seconds{cluster="c1"}"#),
        3600.0
    );
    assert!(value(&text, r#"omni_etcd_backup_interval_seconds{cluster="c2"}"#).is_none());
    // Due one interval after the newest backup began, to the fraction of a
    // second (the backup's id has only the whole second).
    let began = &st["lastbackuptime"];
    let began = began["seconds"].as_f64().unwrap() + began["nanos"].as_f64().unwrap_or(0.0) / 1e9;
    assert_eq!(began.floor() as i64, newest_at, "{st}");
    let due = must(
        &text,
        r#"omni_etcd_backup_next_due_timestamp_seconds{cluster="c1"}"#,
    );
    assert!(
        (due - (began + 3600.0)).abs() < 1e-3,
        "the manual backup moved the next automatic one: due {due}, newest began {began}"
    );
    assert_eq!(
        must(
            &text,
            r#"omni_etcd_backup_last_proven_restorable_timestamp_seconds{cluster="c1"}"#
        ),
        newest_at as f64
    );
    assert!(
        must(
            &text,
            r#"omni_etcd_backup_drill_restore_duration_seconds{cluster="c1"}"#
        ) > 0.0
    );
    assert_eq!(
        must(&text, r#"omni_etcd_backup_drill_status{cluster="c1"}"#),
        1.0
    );
    let age = must(&text, r#"omni_etcd_backup_age_seconds{cluster="c1"}"#);
    let last_ok = must(
        &text,
        r#"omni_etcd_backup_last_success_timestamp_seconds{cluster="c1"}"#,
    );
    assert!(
        (now() as f64 - last_ok - age).abs() < 5.0,
        "age {age}, last {last_ok}"
    );
    assert!(
        value(&text, r#"omni_etcd_backup_age_seconds{cluster="c2"}"#).is_some(),
        "a cluster never backed up ages from its creation"
    );
    assert_eq!(
        must(
            &text,
            r#"omni_controller_crashes_total{controller="EtcdBackupController"}"#
        ),
        0.0
    );
    // Two scrapes answered before this one (which counts once answered).
    assert_eq!(
        must(
            &text,
            r#"omni_http_requests_total{method="GET",route="/metrics",status="2xx"}"#
        ),
        2.0,
        "{text}"
    );
    // Routes are templates: the ids of the resources read never show.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("omni_http_"))
            .all(|l| !l.contains("\"c1\"") && !l.contains("/c1") && !l.contains("c2")),
        "{text}"
    );
    assert!(
        text.contains(r#"route="/api/v1/resources/{kind}/{namespace}/{id}""#),
        "{text}"
    );

    // The age grows between backups (computed at scrape time).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (_, later) = scrape(&omni, None).await;
    assert!(must(&later, r#"omni_etcd_backup_age_seconds{cluster="c1"}"#) > age);

    assert!(
        text.lines()
            .filter(|l| l.starts_with("# HELP"))
            .all(|l| !l.ends_with("..")),
        "{text}"
    );
    let (ok, lint) = promtool_check_metrics(&promtool, &text);
    println!("promtool check metrics: {lint}");
    assert!(ok, "promtool check metrics:\n{lint}\n{text}");

    // Prometheus asks for OpenMetrics and gets it.
    let (ct, om) = scrape(
        &omni,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(value(&om, unreachable).is_some(), "{om}");

    // Whatever the rules and the dashboard query is served.
    for file in ["prometheus/omni-alerts.yml", "grafana/omni-dashboard.json"] {
        let used = referenced_families(&std::fs::read_to_string(deploy(file)).unwrap());
        assert!(used.len() > 5, "{file}: {used:?}");
        let missing: Vec<_> = used.iter().filter(|n| !served(&text, n)).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics not served: {missing:?}"
        );
    }
    // The table keeps the seed's columns; the new fields show in YAML.
    let table = omni.ctl_ok(&["get", "etcdbackupstatus", "c1"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "TYPE",
            "ID",
            "VERSION",
            "STATUS",
            "ERROR",
            "LAST BACKUP TIME",
            "LAST BACKUP ATTEMPT"
        ],
        "{table}"
    );
    let yaml = omni.ctl_ok(&["get", "etcdbackupstatus", "c1", "-o", "yaml"]);
    for field in [
        "  nextbackuptime:",
        "  lastprovenrestorable:",
        "  lastdrillrestoreduration:",
    ] {
        assert!(
            yaml.lines().any(|l| l == field),
            "{field} missing in\n{yaml}"
        );
    }
    let overall = omni.ctl_ok(&["get", "etcdbackupoverallstatus", "-o", "yaml"]);
    assert!(!overall.contains("nextbackuptime"), "{overall}");
    println!(
        "/metrics excerpt:\n{}",
        text.lines()
            .filter(|l| l.contains("c1") || l.contains("failures_total") || l.contains("_count"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
