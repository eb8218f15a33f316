//! Unit tests of the pure parts: which alerts fire, how a status evolves,
//! what is due when, and the payload shapes.

use std::time::Duration;

use omni_resources::retention::RetentionPolicy;
use omni_resources::specs::alert::{
    event, receiver_type, state, AlertReceiverSpec, AlertStatusSpec,
};
use omni_resources::specs::backup::{status, EtcdBackupStatusSpec};
use omni_resources::specs::backup_drill::EtcdBackupDrillStatusSpec;
use omni_resources::specs::backup_retention::EtcdBackupRetentionStatusSpec;
use omni_resources::specs::backup_store::EtcdBackupCopyStatusSpec;
use omni_resources::Timestamp;

use super::derive::{self, ClusterFacts};
use super::track::{self, Due};
use super::{deliver, payload};

const T0: i64 = 1_800_000_000;

fn at(s: i64) -> Timestamp {
    Timestamp::from_unix(T0 + s)
}

fn facts() -> ClusterFacts {
    ClusterFacts {
        cluster: "c1".into(),
        created: at(0),
        interval: Some(Duration::from_secs(3600)),
        ..ClusterFacts::default()
    }
}

fn names(f: &ClusterFacts, r: &AlertReceiverSpec, now: Timestamp) -> Vec<&'static str> {
    derive::cluster_conditions(f, r, now)
        .into_iter()
        .map(|c| c.alert)
        .collect()
}

#[test]
fn a_failed_backup_fires_and_an_ok_one_does_not() {
    let r = AlertReceiverSpec::default();
    let mut f = facts();
    f.backup = Some(EtcdBackupStatusSpec {
        status: status::ERROR,
        error: "etcd unreachable".into(),
        lastbackuptime: at(0),
        lastbackupattempt: at(10),
        ..Default::default()
    });
    let c = derive::cluster_conditions(&f, &r, at(10));
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].alert, event::BACKUP_FAILED);
    assert_eq!(c[0].description, "etcd unreachable");
    assert!(!derive::holds(&f, event::BACKUP_FAILED));
    // A retry under way neither proves nor clears the failure.
    f.backup.as_mut().unwrap().status = status::RUNNING;
    assert!(derive::holds(&f, event::BACKUP_FAILED));
    f.backup.as_mut().unwrap().status = status::OK;
    assert!(names(&f, &r, at(10)).is_empty());
    assert!(!derive::holds(&f, event::BACKUP_FAILED));
}

#[test]
fn stale_after_k_intervals_counted_from_the_last_good_backup() {
    let mut r = AlertReceiverSpec::default(); // k = 2
    let mut f = facts();
    f.backup = Some(EtcdBackupStatusSpec {
        status: status::OK,
        lastbackuptime: at(1000),
        ..Default::default()
    });
    assert!(names(&f, &r, at(1000 + 7199)).is_empty());
    assert_eq!(names(&f, &r, at(1000 + 7200)), [event::BACKUP_STALE]);
    r.staleafterintervals = 3;
    assert!(names(&f, &r, at(1000 + 7200)).is_empty());
    assert_eq!(derive::stale_at(&f, 3), Some(at(1000 + 3 * 3600)));
    // No good backup yet: counted from the cluster's creation.
    f.backup = None;
    assert_eq!(derive::stale_at(&f, 2), Some(at(7200)));
    // No automatic backups: never stale.
    f.interval = None;
    assert_eq!(derive::stale_at(&f, 2), None);
    assert!(names(&f, &r, at(1_000_000)).is_empty());
}

#[test]
fn expected_interval_falls_back_to_the_server_maximum() {
    use omni_resources::specs::cluster::{BackupConfiguration, ClusterSpec};
    let max = Duration::from_secs(86_400);
    let mut spec = ClusterSpec::default();
    assert_eq!(derive::expected_interval(&spec, max), None);
    spec.backupconfiguration = Some(BackupConfiguration::default());
    assert_eq!(derive::expected_interval(&spec, max), Some(max));
    spec.backupconfiguration.as_mut().unwrap().interval =
        Some(omni_resources::duration::ProtoDuration {
            seconds: 7200,
            nanos: 0,
        });
    assert_eq!(
        derive::expected_interval(&spec, max),
        Some(Duration::from_secs(7200))
    );
}

#[test]
fn drill_failure_fires() {
    let mut f = facts();
    f.interval = None;
    f.drill = Some(EtcdBackupDrillStatusSpec {
        status: status::ERROR,
        error: "restore failed".into(),
        backup: "c1-1".into(),
        ..Default::default()
    });
    assert_eq!(
        names(&f, &AlertReceiverSpec::default(), at(0)),
        [event::DRILL_FAILED]
    );
}

#[test]
fn retention_idle_counts_new_runs_over_policy_only() {
    let mut r = EtcdBackupRetentionStatusSpec {
        policy: RetentionPolicy {
            keeplast: 2,
            ..Default::default()
        },
        backups: 5, // bound: 2 + newest = 3
        lastrun: at(1),
        ..Default::default()
    };
    assert!(derive::over_policy(&r));
    let mut seen = derive::count_idle_runs((0, Timestamp::default(), 0), &r);
    assert_eq!(seen.0, 1);
    // The same run seen twice counts once.
    assert_eq!(derive::count_idle_runs(seen, &r), seen);
    r.lastrun = at(2);
    seen = derive::count_idle_runs(seen, &r);
    assert_eq!(seen.0, 2);
    // A run that deleted something resets.
    r.lastrun = at(3);
    r.deletedtotal = 2;
    r.backups = 3;
    seen = derive::count_idle_runs(seen, &r);
    assert_eq!(seen.0, 0);
    // Within policy: nothing counts.
    r.lastrun = at(4);
    assert_eq!(derive::count_idle_runs(seen, &r).0, 0);
    // Pinned backups raise the bound.
    r.backups = 5;
    r.kept = vec!["a".into(), "b".into()];
    assert!(!derive::over_policy(&r));

    let mut f = facts();
    f.interval = None;
    f.retention_idle_runs = 3;
    let recv = AlertReceiverSpec::default(); // N = 3
    assert_eq!(names(&f, &recv, at(0)), [event::RETENTION_IDLE]);
    f.retention_idle_runs = 2;
    assert!(names(&f, &recv, at(0)).is_empty());
}

#[test]
fn a_failing_copy_to_the_secondary_fires_until_a_copy_succeeds() {
    let r = AlertReceiverSpec::default();
    let mut f = facts();
    f.copy = Some(EtcdBackupCopyStatusSpec {
        status: status::ERROR,
        error: "uploading to store \"offsite\": connection refused".into(),
        store: "main".into(),
        secondarystore: "offsite".into(),
        pending: 2,
        attempts: 3,
        ..Default::default()
    });
    let c = derive::cluster_conditions(&f, &r, at(10));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].alert, event::COPY_FAILED);
    assert_eq!(c[0].severity, derive::WARNING);
    assert!(c[0].summary.contains("offsite"), "{}", c[0].summary);
    assert!(
        c[0].description.contains("2 backup(s)") && c[0].description.contains("connection refused"),
        "{}",
        c[0].description
    );
    // A retry under way holds the alert; a copy that succeeds clears it.
    assert!(!derive::holds(&f, event::COPY_FAILED));
    f.copy.as_mut().unwrap().status = status::RUNNING;
    assert!(derive::holds(&f, event::COPY_FAILED));
    f.copy.as_mut().unwrap().status = status::OK;
    assert!(names(&f, &r, at(10)).is_empty());
    // The receiver may ask for it by name.
    assert!(event::ALL.contains(&event::COPY_FAILED));
}

#[test]
fn store_condition_fires_on_a_configuration_error() {
    assert!(derive::store_condition("").is_none());
    let c = derive::store_condition("not initialized").unwrap();
    assert_eq!(c.alert, event::STORE_CONFIG_INVALID);
}

fn condition() -> derive::Condition {
    derive::Condition {
        alert: event::BACKUP_FAILED,
        severity: derive::CRITICAL,
        summary: "s".into(),
        description: "d".into(),
    }
}

#[test]
fn one_firing_message_until_resend_then_one_resolved() {
    let resend = Duration::from_secs(600);
    let mut s = AlertStatusSpec::default();
    let rs = [("hook".to_string(), true)];
    track::update(
        &mut s,
        event::BACKUP_FAILED,
        "c1",
        Some(&condition()),
        &rs,
        at(0),
    );
    assert_eq!(s.state, state::FIRING);
    assert_eq!(s.startsat, at(0));
    assert_eq!(
        track::due(&s.receivers[0], true, resend, at(0)),
        Due::Now(state::FIRING)
    );

    track::record(&mut s, "hook", state::FIRING, Ok(()), at(1), |_| {
        Duration::ZERO
    });
    // Reconciled again and again: nothing new is due until the resend.
    for t in [1, 2, 300] {
        track::update(
            &mut s,
            event::BACKUP_FAILED,
            "c1",
            Some(&condition()),
            &rs,
            at(t),
        );
        assert_eq!(
            track::due(&s.receivers[0], true, resend, at(t)),
            Due::At(at(601))
        );
    }
    assert_eq!(s.startsat, at(0), "still the same episode");
    assert_eq!(
        track::due(&s.receivers[0], true, resend, at(601)),
        Due::Now(state::FIRING)
    );

    let clear = [("hook".to_string(), false)];
    track::update(&mut s, event::BACKUP_FAILED, "c1", None, &clear, at(700));
    assert_eq!((s.state.as_str(), s.endsat), (state::RESOLVED, at(700)));
    assert_eq!(
        track::due(&s.receivers[0], true, resend, at(700)),
        Due::Now(state::RESOLVED)
    );
    assert_eq!(
        track::due(&s.receivers[0], false, resend, at(700)),
        Due::Never
    );
    track::record(&mut s, "hook", state::RESOLVED, Ok(()), at(701), |_| {
        Duration::ZERO
    });
    assert_eq!(
        track::due(&s.receivers[0], true, resend, at(5000)),
        Due::Never
    );

    // It fires again: a new episode, announced at once.
    track::update(
        &mut s,
        event::BACKUP_FAILED,
        "c1",
        Some(&condition()),
        &rs,
        at(9000),
    );
    assert_eq!(s.startsat, at(9000));
    assert_eq!(s.endsat, Timestamp::default());
    assert_eq!(
        track::due(&s.receivers[0], true, resend, at(9000)),
        Due::Now(state::FIRING)
    );
}

#[test]
fn without_resolved_messages_a_new_episode_is_still_announced() {
    let resend = Duration::from_secs(600);
    let mut s = AlertStatusSpec::default();
    track::update(
        &mut s,
        "a",
        "c",
        Some(&condition()),
        &[("r".into(), true)],
        at(0),
    );
    track::record(&mut s, "r", state::FIRING, Ok(()), at(0), |_| {
        Duration::ZERO
    });
    track::update(&mut s, "a", "c", None, &[("r".into(), false)], at(10));
    assert_eq!(
        track::due(&s.receivers[0], false, resend, at(10)),
        Due::Never
    );
    track::update(
        &mut s,
        "a",
        "c",
        Some(&condition()),
        &[("r".into(), true)],
        at(20),
    );
    assert_eq!(
        track::due(&s.receivers[0], false, resend, at(20)),
        Due::Now(state::FIRING)
    );
}

#[test]
fn failed_deliveries_stay_due_with_capped_backoff() {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(8));
    let retry = |n| deliver::backoff(n, min, max);
    assert_eq!(
        (1..=6).map(|n| retry(n).as_secs()).collect::<Vec<_>>(),
        [1, 2, 4, 8, 8, 8]
    );
    let mut s = AlertStatusSpec::default();
    track::update(
        &mut s,
        "a",
        "c",
        Some(&condition()),
        &[("r".into(), true)],
        at(0),
    );
    let resend = Duration::from_secs(600);
    let mut now = 0;
    for n in 1..=4u32 {
        track::record(
            &mut s,
            "r",
            state::FIRING,
            Err("refused".into()),
            at(now),
            retry,
        );
        let d = &s.receivers[0];
        assert_eq!(
            (d.attempts, d.sent.as_str(), d.error.as_str()),
            (n, "", "refused")
        );
        let next = at(now + retry(n).as_secs() as i64);
        assert_eq!(track::due(d, true, resend, at(now)), Due::At(next));
        assert_eq!(track::due(d, true, resend, next), Due::Now(state::FIRING));
        now = next.seconds - T0;
    }
    track::record(&mut s, "r", state::FIRING, Ok(()), at(now), retry);
    let d = &s.receivers[0];
    assert_eq!(
        (d.attempts, d.sent.as_str(), d.error.as_str()),
        (0, state::FIRING, "")
    );
}

#[test]
fn deleted_receivers_are_dropped_and_new_ones_added() {
    let mut s = AlertStatusSpec::default();
    track::update(
        &mut s,
        "a",
        "c",
        Some(&condition()),
        &[("old".into(), true)],
        at(0),
    );
    track::update(
        &mut s,
        "a",
        "c",
        Some(&condition()),
        &[("new".into(), true)],
        at(1),
    );
    let names: Vec<&str> = s.receivers.iter().map(|d| d.receiver.as_str()).collect();
    assert_eq!(names, ["new"]);
    // Recording for a receiver that is gone changes nothing.
    let before = s.clone();
    track::record(&mut s, "old", state::FIRING, Ok(()), at(2), |_| {
        Duration::ZERO
    });
    assert_eq!(s, before);
}

fn status() -> AlertStatusSpec {
    AlertStatusSpec {
        alert: event::BACKUP_FAILED.into(),
        cluster: "c1".into(),
        severity: "critical".into(),
        state: state::FIRING.into(),
        summary: "etcd backup of cluster c1 failed".into(),
        description: "boom".into(),
        startsat: Timestamp::from_unix(1_764_504_000), // 2025-11-30T12:00:00Z
        ..Default::default()
    }
}

#[test]
fn payload_shapes() {
    let a = status();
    let m = payload::Message {
        alert: &a,
        state: state::FIRING,
        now: Timestamp::from_unix(1_764_504_060),
        resend: Duration::from_secs(3600),
        generator_url: Some("https://omni.example/ui/clusters/c1".into()),
    };
    let w = payload::body(receiver_type::WEBHOOK, &m);
    assert_eq!(w["alert"], "backup-failed");
    assert_eq!(w["status"], "firing");
    assert_eq!(w["startsAt"], "2025-11-30T12:00:00Z");
    assert!(w["endsAt"].is_null());

    let am = payload::body(receiver_type::ALERTMANAGER, &m);
    assert_eq!(am[0]["labels"]["alertname"], "backup-failed");
    assert_eq!(am[0]["labels"]["cluster"], "c1");
    assert_eq!(am[0]["annotations"]["description"], "boom");
    // Firing: ends after four resend intervals unless refreshed.
    assert_eq!(am[0]["endsAt"], "2025-11-30T16:01:00Z");
    assert_eq!(am[0]["generatorURL"], "https://omni.example/ui/clusters/c1");
    assert_eq!(payload::path(receiver_type::ALERTMANAGER), "/api/v2/alerts");

    let resolved = payload::Message {
        state: state::RESOLVED,
        ..m
    };
    let s = payload::body(receiver_type::SLACK, &resolved);
    let text = s["text"].as_str().unwrap();
    assert!(text.contains("[RESOLVED] backup-failed (c1)"), "{text}");
    assert_eq!(s["blocks"][0]["type"], "section");
    let am = payload::body(receiver_type::ALERTMANAGER, &resolved);
    assert_eq!(am[0]["endsAt"], "2025-11-30T12:01:00Z");
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(
        derive::rfc3339(Timestamp::from_unix(0)),
        "1970-01-01T00:00:00Z"
    );
    assert_eq!(
        derive::rfc3339(Timestamp::from_unix(951_782_400 + 3661)),
        "2000-02-29T01:01:01Z"
    );
}
