use std::time::Duration;

use super::*;
use crate::{validate, Facts};
use omni_resources::duration::ProtoDuration;
use omni_resources::specs::cluster::{DrillSchedule, RestoreDrill};

/// The seed guide's template.
pub(crate) const SEED: &str = "\
kind: Cluster
name: talos-default
kubernetes:
  version: v1.28.2
talos:
  version: v1.5.5
features:
  backupConfiguration:
    interval: 1h
---
kind: ControlPlane
machines:
  - 1dd4397b-37f1-4196-9c37-becef670b64a
---
kind: Workers
machines:
  - 0d1f01c3-0a8a-4560-8745-bb792e3dfaad
  - a0f29661-cd2d-4e25-a6c9-da5ca4c48d58
";

const CP: &str = "1dd4397b-37f1-4196-9c37-becef670b64a";
const W1: &str = "0d1f01c3-0a8a-4560-8745-bb792e3dfaad";
const W2: &str = "a0f29661-cd2d-4e25-a6c9-da5ca4c48d58";

/// The messages of a template's problems.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(p) => p.0.iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(text: &str) -> String {
    let all = problems(text);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap_or_default()
}

#[test]
fn the_seed_template_parses() {
    let t = parse(SEED).unwrap();
    assert_eq!(t.name(), "talos-default");
    assert_eq!(t.cluster.kubernetes_version, "1.28.2");
    assert_eq!(t.cluster.talos_version, "1.5.5");
    assert_eq!(t.cluster.backup_interval, Some(Duration::from_secs(3600)));
    assert!(!t.cluster.enable_workload_proxy && !t.cluster.disk_encryption);
    assert_eq!(t.control_plane.machines, [CP]);
    assert_eq!(t.control_plane.document, Some(2));
    assert_eq!(t.workers.machines, [W1, W2]);
    assert_eq!(t.workers.document, Some(3));
}

#[test]
fn workers_and_backups_are_optional() {
    let text = "kind: Cluster\nname: c\nkubernetes:\n  version: 1.28.2\ntalos:\n  version: v1.5.5-alpha.1\n---\nkind: ControlPlane\nmachines: [m1]\n";
    let t = parse(text).unwrap();
    assert_eq!(t.cluster.backup_interval, None);
    assert_eq!(t.cluster.talos_version, "1.5.5-alpha.1");
    assert_eq!(t.workers.document, None);
    assert!(t.workers.machines.is_empty());
}

fn seed_with(from: &str, to: &str) -> String {
    assert!(SEED.contains(from), "{from}");
    SEED.replacen(from, to, 1)
}

#[test]
fn unknown_kind() {
    assert_eq!(
        one_problem(&seed_with("kind: Workers", "kind: Worker")),
        "document 3: kind: unknown kind \"Worker\"; expected Cluster, ControlPlane or Workers"
    );
}

#[test]
fn missing_kind() {
    assert_eq!(
        one_problem(&seed_with("kind: Workers\n", "")),
        "document 3: kind: is required (Cluster, ControlPlane or Workers)"
    );
    assert_eq!(
        one_problem(&format!("{SEED}---\n- a list\n")),
        "document 4: expected a mapping with a kind (Cluster, ControlPlane or Workers)"
    );
}

#[test]
fn missing_and_bad_name() {
    assert_eq!(
        one_problem(&seed_with("name: talos-default\n", "")),
        "document 1 (Cluster): name: is required"
    );
    assert_eq!(
        one_problem(&seed_with("name: talos-default", "name: talos/default")),
        "document 1 (Cluster): name: \"talos/default\" contains '/'; only letters, digits, '-', '_' and '.' are allowed"
    );
}

#[test]
fn missing_and_bad_versions() {
    let text = seed_with("kubernetes:\n  version: v1.28.2\n", "")
        .replace("version: v1.5.5", "version: latest");
    assert_eq!(
        problems(&text),
        [
            "document 1 (Cluster): kubernetes.version: is required",
            "document 1 (Cluster): talos.version: \"latest\" is not a version like v1.28.2",
        ]
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        one_problem(&seed_with("interval: 1h", "interval: 1x")),
        "document 1 (Cluster): features.backupConfiguration.interval: invalid duration \"1x\": expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 1h30m"
    );
    assert_eq!(
        one_problem(&seed_with("interval: 1h", "interval: 3600")),
        "document 1 (Cluster): features.backupConfiguration.interval: invalid type: integer `3600`, expected a string"
    );
    // No interval is no longer a problem: nothing set is no configuration.
    let t = parse(&seed_with("    interval: 1h\n", "    {}\n")).unwrap();
    assert_eq!(t.cluster_spec(None).backupconfiguration, None);
}

#[test]
fn unknown_field() {
    assert_eq!(
        one_problem(&seed_with("backupConfiguration", "backupConfig")),
        "document 1 (Cluster): features.backupConfig: unknown field `backupConfig`, expected one of `enableWorkloadProxy`, `diskEncryption`, `backupConfiguration`"
    );
}

#[test]
fn missing_control_plane_and_cluster() {
    let without_cp = seed_with(
        "kind: ControlPlane\nmachines:\n  - 1dd4397b-37f1-4196-9c37-becef670b64a\n---\n",
        "",
    );
    assert_eq!(
        one_problem(&without_cp),
        "template: a ControlPlane document is required"
    );
    let only_sets = SEED.split_once("---\n").map(|(_, rest)| rest).unwrap();
    assert_eq!(
        one_problem(only_sets),
        "template: a Cluster document is required"
    );
    assert_eq!(one_problem(""), "template: no documents");
    assert_eq!(
        one_problem(&seed_with(&format!("  - {CP}\n"), "")),
        "document 2 (ControlPlane): machines: at least one machine is required"
    );
}

#[test]
fn repeated_documents() {
    assert_eq!(
        one_problem(&format!("{SEED}---\nkind: Workers\nmachines: []\n")),
        "document 4 (Workers): kind: only one Workers document is allowed (the first is document 3)"
    );
}

#[test]
fn duplicate_machine() {
    assert_eq!(
        one_problem(&seed_with(W2, CP)),
        format!("document 3 (Workers): machines[1]: machine \"{CP}\" is listed more than once (first in document 2 (ControlPlane) machines[0])")
    );
}

#[test]
fn bad_machine_id_and_yaml() {
    assert_eq!(
        one_problem(&seed_with(W1, "a b")),
        "document 3 (Workers): machines[0]: \"a b\" contains ' '; only letters, digits, '-', '_' and '.' are allowed"
    );
    let all = problems(&format!("{SEED}---\nkind: [\n"));
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("document 4: invalid YAML: "),
        "{}",
        all[0]
    );
}

#[test]
fn every_problem_is_listed() {
    let text = seed_with("name: talos-default\n", "")
        .replace("interval: 1h", "interval: soon")
        .replace("kind: Workers", "kind: Workerz");
    assert_eq!(problems(&text).len(), 3, "{:#?}", problems(&text));
}

fn facts() -> Facts {
    Facts {
        machines: [CP, W1, W2].iter().map(|s| s.to_string()).collect(),
        assignments: [(W1.to_string(), "talos-default".to_string())].into(),
    }
}

#[test]
fn registered_machines_of_no_other_cluster_are_fine() {
    assert!(validate(SEED, &facts()).is_ok());
}

#[test]
fn unknown_machine() {
    let mut f = facts();
    f.machines.remove(W2);
    let err = validate(SEED, &f).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("1 problem in the template:\n  document 3 (Workers): machines[1]: machine \"{W2}\" is not registered (no Machines resource)")
    );
}

#[test]
fn machine_in_another_cluster() {
    let mut f = facts();
    f.assignments.insert(CP.into(), "other".into());
    let err = validate(SEED, &f).unwrap_err();
    assert_eq!(
        err.0[0].to_string(),
        format!(
            "document 2 (ControlPlane): machines[0]: machine \"{CP}\" belongs to cluster \"other\""
        )
    );
}

#[test]
fn retention_and_drills_in_the_backup_configuration() {
    let text = seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    keepLast: 3\n    keepDaily: 7\n    keepMonthly: 12\n    restoreDrill: true\n",
    );
    let t = parse(&text).unwrap();
    assert_eq!(
        t.cluster.backup_retention.to_string(),
        "keep-last=3 keep-daily=7 keep-monthly=12"
    );
    assert_eq!(t.cluster.restore_drill, RestoreDrill::AfterEachBackup);
    let spec = t.cluster_spec(None);
    let conf = spec.backupconfiguration.unwrap();
    assert_eq!(
        (conf.keeplast, conf.keepdaily, conf.keepmonthly),
        (3, 7, 12)
    );
    assert_eq!(conf.restoredrill, RestoreDrill::AfterEachBackup);
    assert_eq!(
        problems(&seed_with("    interval: 1h\n", "    interval: 1h\n    keepWeekly: -1\n    keepHourly: 20000\n")),
        [
            "document 1 (Cluster): features.backupConfiguration.keepHourly: must be at most 10000, got 20000",
            "document 1 (Cluster): features.backupConfiguration.keepWeekly: must not be negative, got -1",
        ]
    );
    assert!(parse(SEED).unwrap().cluster.backup_retention.is_empty());
}

#[test]
fn talos_version_needs_its_v_like_the_reference() {
    assert_eq!(
        one_problem(&seed_with("version: v1.5.5", "version: 1.5.5")),
        "document 1 (Cluster): talos.version: version should start with 'v'"
    );
}

#[test]
fn disk_encryption_needs_talos_1_5() {
    let with = |talos: &str| {
        seed_with("version: v1.5.5", &format!("version: {talos}"))
            .replace("features:\n", "features:\n  diskEncryption: true\n")
    };
    assert_eq!(
        one_problem(&with("v1.4.8")),
        "document 1 (Cluster): features.diskEncryption: disk encryption is supported only for Talos version >= 1.5.0"
    );
    // A pre-release of 1.5 comes before 1.5.0.
    assert_eq!(problems(&with("v1.5.0-beta.0")).len(), 1);
    assert!(parse(&with("v1.5.0")).unwrap().cluster.disk_encryption);
    assert!(parse(&with("v1.10.1")).is_ok());
}

#[test]
fn zero_interval_turns_backups_off() {
    let t = parse(&seed_with("interval: 1h", "interval: 0s")).unwrap();
    assert_eq!(t.cluster_spec(None).backupconfiguration, None);
    // Retention without automatic backups is kept, with no interval.
    let t = parse(&seed_with("interval: 1h", "interval: 0s\n    keepLast: 3")).unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!((conf.interval, conf.keeplast), (None, 3));
}

#[test]
fn a_cron_schedule_with_a_zone_stands_for_the_interval() {
    let text = seed_with(
        "    interval: 1h\n",
        "    schedule: \"0 */6 * * *\"\n    timezone: Europe/Berlin\n",
    );
    let t = parse(&text).unwrap();
    assert_eq!(t.cluster.backup_interval, None);
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!(conf.schedule.as_deref(), Some("0 */6 * * *"));
    assert_eq!(conf.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(conf.interval, None);
    // Retention or drills alone need neither.
    let t = parse(&seed_with(
        "    interval: 1h\n",
        "    restoreDrill: false\n    keepLast: 2\n",
    ))
    .unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!(
        (conf.interval, conf.schedule, conf.keeplast),
        (None, None, 2)
    );
}

#[test]
fn bad_schedules_are_reported_by_field() {
    let base = "document 1 (Cluster): features.backupConfiguration";
    assert_eq!(
        one_problem(&seed_with("    interval: 1h\n", "    interval: 1h\n    schedule: \"@daily\"\n")),
        format!("{base}: features.backupConfiguration.interval and features.backupConfiguration.schedule are mutually exclusive: set one of them")
    );
    let p = one_problem(&seed_with(
        "    interval: 1h\n",
        "    schedule: \"0 */6 * *\"\n",
    ));
    assert!(
        p.starts_with(&format!(
            "{base}.schedule: invalid cron expression \"0 */6 * *\""
        )),
        "{p}"
    );
    assert_eq!(
        one_problem(&seed_with("    interval: 1h\n", "    schedule: \"@daily\"\n    timezone: Mars/Base\n")),
        format!("{base}.timezone: unknown time zone \"Mars/Base\": expected an IANA name such as Europe/Berlin or UTC")
    );
    assert_eq!(
        one_problem(&seed_with(
            "    interval: 1h\n",
            "    interval: 1h\n    timezone: UTC\n"
        )),
        format!("{base}.timezone: only applies with features.backupConfiguration.schedule")
    );
}

#[test]
fn a_drill_takes_its_own_schedule_or_interval() {
    let drill = |yaml: &str| {
        seed_with(
            "    interval: 1h\n",
            &format!("    interval: 1h\n    restoreDrill: {yaml}\n"),
        )
    };
    let t = parse(&drill("{schedule: daily}")).unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!(
        conf.restoredrill,
        RestoreDrill::Scheduled(DrillSchedule {
            schedule: Some("daily".into()),
            ..DrillSchedule::default()
        })
    );
    let t = parse(&drill("{interval: 12h}")).unwrap();
    assert_eq!(
        t.cluster.restore_drill,
        RestoreDrill::Scheduled(DrillSchedule {
            interval: Some(ProtoDuration {
                seconds: 12 * 3600,
                nanos: 0
            }),
            ..DrillSchedule::default()
        })
    );
    assert!(parse(&drill("{schedule: \"0 3 * * *\", timezone: Asia/Tokyo}")).is_ok());
    let base = "document 1 (Cluster): features.backupConfiguration.restoreDrill";
    assert_eq!(
        one_problem(&drill("{}")),
        format!("{base}: set features.backupConfiguration.restoreDrill.schedule (hourly, daily, weekly or a cron pattern) or features.backupConfiguration.restoreDrill.interval")
    );
    assert_eq!(
        one_problem(&drill("{interval: 1y}")),
        format!("{base}.interval: invalid duration \"1y\": expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 1h30m")
    );
    assert!(one_problem(&drill("{every: day}"))
        .starts_with(&format!("{base}.every: unknown field `every`")));
    assert_eq!(
        one_problem(&drill("yes please")),
        format!("{base}: expected true, false, or a map with schedule or interval")
    );
    assert_eq!(
        one_problem(&drill("{schedule: weekly, timezone: UTC}")),
        format!("{base}.timezone: only applies to a cron pattern, not to hourly, daily or weekly")
    );
}

#[test]
fn backup_stores_reach_the_cluster_spec_and_are_checked() {
    let t = parse(&seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    store: nas\n    secondaryStore: offsite\n",
    ))
    .unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!(conf.store.as_deref(), Some("nas"));
    assert_eq!(conf.secondarystore.as_deref(), Some("offsite"));
    let p = one_problem(&seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    secondaryStore: default\n",
    ));
    assert!(
        p.contains("features.backupConfiguration.secondaryStore")
            && p.contains("must differ from the primary store \"default\""),
        "{p}"
    );
    let p = one_problem(&seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    store: a/b\n",
    ));
    assert!(p.contains("features.backupConfiguration.store"), "{p}");
}

#[test]
fn continuous_backup_and_its_delta_interval() {
    let t = parse(&seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    continuous: true\n    deltaInterval: 5s\n",
    ))
    .unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert!(conf.continuous);
    assert_eq!(conf.delta_interval(), Some(Duration::from_secs(5)));
    let t = parse(&seed_with(
        "    interval: 1h\n",
        "    interval: 1h\n    continuous: true\n",
    ))
    .unwrap();
    let conf = t.cluster_spec(None).backupconfiguration.unwrap();
    assert_eq!((conf.continuous, conf.deltainterval), (true, None));
    assert!(
        !parse(SEED)
            .unwrap()
            .cluster_spec(None)
            .backupconfiguration
            .unwrap()
            .continuous
    );
    assert_eq!(
        problems(&seed_with("    interval: 1h\n", "    interval: 1h\n    deltaInterval: 5s\n")),
        ["document 1 (Cluster): features.backupConfiguration.deltaInterval: only applies with features.backupConfiguration.continuous: true"]
    );
}
