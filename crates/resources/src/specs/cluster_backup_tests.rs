use super::*;
use crate::specs::cluster::ClusterSpec;
use crate::specs::Kind;
use crate::Timestamp;

fn with_conf(conf: BackupConfiguration) -> ClusterSpec {
    ClusterSpec {
        backupconfiguration: Some(conf),
        ..ClusterSpec::default()
    }
}

fn with_interval(secs: i64) -> ClusterSpec {
    with_conf(BackupConfiguration {
        interval: Some(ProtoDuration {
            seconds: secs,
            nanos: 0,
        }),
        ..BackupConfiguration::default()
    })
}

fn with_schedule(pattern: &str, tz: Option<&str>) -> ClusterSpec {
    with_conf(BackupConfiguration {
        schedule: Some(pattern.into()),
        timezone: tz.map(Into::into),
        ..BackupConfiguration::default()
    })
}

/// A cluster whose `backupconfiguration` is this JSON document.
fn conf(json: &str) -> ClusterSpec {
    let conf: serde_json::Value = serde_json::from_str(json).unwrap();
    serde_json::from_value(serde_json::json!({ "backupconfiguration": conf })).unwrap()
}

fn err(spec: &ClusterSpec) -> String {
    spec.check(&ValidationContext::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn interval_bounds_are_inclusive_and_named() {
    let ctx = ValidationContext::default();
    assert!(with_interval(3600).check(&ctx).is_ok());
    assert!(with_interval(86400).check(&ctx).is_ok());
    assert_eq!(
        err(&with_interval(1800)),
        "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 30m0s"
    );
    assert_eq!(
        err(&with_interval(90000)),
        "spec.backupconfiguration.interval: backup interval must be less than 24h0m0s, actual 25h0m0s"
    );
    assert!(with_interval(-5).check(&ctx).is_err());
    assert_eq!(
        with_interval(3600).backup_interval(),
        Some(Duration::from_secs(3600))
    );
    assert_eq!(with_interval(0).backup_interval(), None);
}

#[test]
fn zero_interval_alone_is_refused_like_the_reference() {
    let ctx = ValidationContext::default();
    assert_eq!(
        err(&with_interval(0)),
        "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 0s"
    );
    assert!(ClusterSpec::default().check(&ctx).is_ok());
    let mut spec = with_interval(0);
    spec.backupconfiguration.as_mut().unwrap().keeplast = 2;
    assert!(spec.check(&ctx).is_ok());
    assert!(spec.backup_cadence().is_none());
}

#[test]
fn a_configuration_without_interval_is_accepted_and_backs_up_nothing() {
    let ctx = ValidationContext::default();
    // The defect of the last session: these were refused.
    for text in [
        r#"{"restoredrill": false}"#,
        r#"{"keeplast": 3}"#,
        r#"{"restoredrill": true}"#,
        r#"{}"#,
    ] {
        let spec = conf(text);
        assert!(spec.check(&ctx).is_ok(), "{text}: {:?}", spec.check(&ctx));
        assert!(spec.backup_cadence().is_none(), "{text}");
    }
    // Unset stays absent in the document; set renders as before.
    let v = serde_json::to_value(conf(r#"{"restoredrill": false}"#)).unwrap();
    assert_eq!(v["backupconfiguration"], serde_json::json!({}));
    let v = serde_json::to_value(with_interval(3600)).unwrap();
    assert_eq!(
        v["backupconfiguration"],
        serde_json::json!({"interval": {"seconds": 3600, "nanos": 0}})
    );
}

#[test]
fn interval_and_schedule_are_exclusive_and_both_are_named() {
    let mut spec = with_schedule("0 */6 * * *", None);
    spec.backupconfiguration.as_mut().unwrap().interval = Some(ProtoDuration {
        seconds: 3600,
        nanos: 0,
    });
    assert_eq!(
        err(&spec),
        "spec.backupconfiguration: spec.backupconfiguration.interval and spec.backupconfiguration.schedule are mutually exclusive: set one of them"
    );
    let mut spec = with_interval(3600);
    spec.backupconfiguration.as_mut().unwrap().timezone = Some("UTC".into());
    assert_eq!(
        err(&spec),
        "spec.backupconfiguration.timezone: only applies with spec.backupconfiguration.schedule"
    );
}

#[test]
fn schedules_are_parsed_bounded_and_named() {
    let ctx = ValidationContext::default();
    let spec = with_schedule("0 */6 * * *", Some("Europe/Berlin"));
    assert!(spec.check(&ctx).is_ok());
    assert!(matches!(spec.backup_cadence(), Some(Cadence::Cron(_))));
    assert_eq!(spec.backup_interval(), None);
    assert!(err(&with_schedule("0 */6 * *", None))
        .starts_with("spec.backupconfiguration.schedule: invalid cron expression \"0 */6 * *\""));
    assert_eq!(
        err(&with_schedule("0 */6 * * *", Some("Europe/Nowhere"))),
        "spec.backupconfiguration.timezone: unknown time zone \"Europe/Nowhere\": expected an IANA name such as Europe/Berlin or UTC"
    );
    assert_eq!(
        err(&with_schedule("*/10 * * * *", None)),
        "spec.backupconfiguration.schedule: backup schedule \"*/10 * * * *\" fires 10m0s apart, more often than the minimum interval 1h0m0s"
    );
    assert_eq!(
        err(&with_schedule("0 0 1 * *", None)),
        "spec.backupconfiguration.schedule: backup schedule \"0 0 1 * *\" leaves 744h0m0s between runs, longer than the maximum interval 24h0m0s"
    );
    // The server's bounds decide: a lowered minimum lets seconds through.
    let low = ValidationContext {
        now: Timestamp::now(),
        min_backup_interval: Duration::from_secs(1),
        max_backup_interval: Duration::from_secs(3600),
    };
    assert!(with_schedule("*/5 * * * * *", None).check(&low).is_ok());
    let v = serde_json::to_value(with_schedule("0 */6 * * *", Some("UTC"))).unwrap();
    assert_eq!(
        v["backupconfiguration"],
        serde_json::json!({"schedule": "0 */6 * * *", "timezone": "UTC"})
    );
}

#[test]
fn restoredrill_keeps_its_bool_form_and_takes_a_schedule() {
    let ctx = ValidationContext::default();
    let on = conf(r#"{"interval": {"seconds": 3600}, "restoredrill": true}"#);
    assert!(on.restore_drill());
    assert!(on.drill_cadence().is_none());
    let v = serde_json::to_value(&on).unwrap();
    assert_eq!(v["backupconfiguration"]["restoredrill"], true);
    let off = conf(r#"{"interval": {"seconds": 3600}, "restoredrill": false}"#);
    assert!(!off.restore_drill());
    let daily = conf(r#"{"restoredrill": {"schedule": "daily"}}"#);
    assert!(daily.check(&ctx).is_ok());
    assert!(daily.restore_drill());
    assert!(
        matches!(daily.drill_cadence(), Some(Cadence::Every(d)) if d == Duration::from_secs(86400))
    );
    let v = serde_json::to_value(&daily).unwrap();
    assert_eq!(
        v["backupconfiguration"]["restoredrill"],
        serde_json::json!({"schedule": "daily"})
    );
    let cron = conf(r#"{"restoredrill": {"schedule": "0 3 * * *", "timezone": "Asia/Tokyo"}}"#);
    assert!(cron.check(&ctx).is_ok());
    assert!(matches!(cron.drill_cadence(), Some(Cadence::Cron(_))));
    let every = conf(r#"{"restoredrill": {"interval": {"seconds": 7200}}}"#);
    assert!(
        matches!(every.drill_cadence(), Some(Cadence::Every(d)) if d == Duration::from_secs(7200))
    );
    // Weekly and monthly drills are fine: no maximum for drills.
    assert!(conf(r#"{"restoredrill": {"schedule": "0 0 1 * *"}}"#)
        .check(&ctx)
        .is_ok());
}

#[test]
fn bad_drill_schedules_name_their_field() {
    assert_eq!(
        err(&conf(r#"{"restoredrill": {}}"#)),
        "spec.backupconfiguration.restoredrill: set spec.backupconfiguration.restoredrill.schedule (hourly, daily, weekly or a cron pattern) or spec.backupconfiguration.restoredrill.interval"
    );
    assert_eq!(
        err(&conf(
            r#"{"restoredrill": {"schedule": "daily", "interval": {"seconds": 3600}}}"#
        )),
        "spec.backupconfiguration.restoredrill: spec.backupconfiguration.restoredrill.interval and spec.backupconfiguration.restoredrill.schedule are mutually exclusive: set one of them"
    );
    assert_eq!(
        err(&conf(r#"{"restoredrill": {"interval": {"seconds": 60}}}"#)),
        "spec.backupconfiguration.restoredrill.interval: drill interval must be greater than 1h0m0s, actual 1m0s"
    );
    assert!(err(&conf(r#"{"restoredrill": {"schedule": "often"}}"#))
        .starts_with("spec.backupconfiguration.restoredrill.schedule: invalid cron expression"));
    assert!(err(&conf(
        r#"{"restoredrill": {"schedule": "0 3 * * *", "timezone": "Nowhere"}}"#
    ))
    .starts_with("spec.backupconfiguration.restoredrill.timezone: unknown time zone"));
    let e = serde_json::from_value::<ClusterSpec>(serde_json::json!({
        "backupconfiguration": {"restoredrill": {"every": "day"}}
    }))
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `every`"), "{e}");
    let e = serde_json::from_value::<ClusterSpec>(serde_json::json!({
        "backupconfiguration": {"restoredrill": "yes"}
    }))
    .unwrap_err()
    .to_string();
    assert!(e.contains("true, false, or a map"), "{e}");
}

#[test]
fn retention_counts_are_checked_by_field_name() {
    let ctx = ValidationContext::default();
    let mut spec = with_interval(0);
    assert_eq!(spec.retention_policy(), None);
    let conf = spec.backupconfiguration.as_mut().unwrap();
    conf.keepdaily = 7;
    conf.keeplast = 3;
    assert!(spec.check(&ctx).is_ok());
    assert_eq!(
        spec.retention_policy().unwrap().to_string(),
        "keep-last=3 keep-daily=7"
    );
    let conf = spec.backupconfiguration.as_mut().unwrap();
    conf.keepweekly = -1;
    assert_eq!(
        err(&spec),
        "spec.backupconfiguration.keepweekly: must not be negative, got -1"
    );
    let conf = spec.backupconfiguration.as_mut().unwrap();
    conf.keepweekly = 0;
    conf.keepmonthly = 1_000_000;
    assert_eq!(
        err(&spec),
        "spec.backupconfiguration.keepmonthly: must be at most 10000, got 1000000"
    );
}

#[test]
fn unset_retention_fields_stay_out_of_the_document() {
    let mut spec = with_interval(3600);
    let conf = spec.backupconfiguration.as_mut().unwrap();
    conf.keeplast = 2;
    conf.restoredrill = RestoreDrill::AfterEachBackup;
    let v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["backupconfiguration"]["keeplast"], 2);
    assert_eq!(v["backupconfiguration"]["restoredrill"], true);
    assert!(v["backupconfiguration"].get("keephourly").is_none());
    assert!(spec.restore_drill());
}

#[test]
fn store_names_are_checked_and_the_secondary_differs() {
    let ok = conf(r#"{"store": "fast", "secondarystore": "offsite"}"#);
    assert!(ok.check(&ValidationContext::default()).is_ok());
    assert_eq!(ok.backup_stores(), ("fast".into(), Some("offsite".into())));
    assert_eq!(
        conf(r#"{"interval": {"seconds": 3600}}"#).backup_stores(),
        ("default".into(), None)
    );
    assert_eq!(
        err(&conf(r#"{"secondarystore": "default"}"#)),
        "spec.backupconfiguration.secondarystore: must differ from the primary store \"default\""
    );
    assert!(
        err(&conf(r#"{"store": "a/b"}"#)).starts_with("spec.backupconfiguration.store: store name")
    );
    assert!(err(&conf(r#"{"secondarystore": ""}"#))
        .starts_with("spec.backupconfiguration.secondarystore: store name"));
    // Unset store fields stay out of the document.
    let v = serde_json::to_value(conf(r#"{"keeplast": 2}"#)).unwrap();
    assert!(v["backupconfiguration"].get("store").is_none());
}

#[test]
fn continuous_and_its_delta_interval_are_checked_and_stay_out_when_unset() {
    let ctx = ValidationContext::default();
    let on = conf(r#"{"interval": {"seconds": 3600}, "continuous": true}"#);
    assert!(on.check(&ctx).is_ok());
    let c = on.backupconfiguration.as_ref().unwrap();
    assert_eq!(c.delta_interval(), Some(DEFAULT_DELTA_INTERVAL));
    let yaml = serde_json::to_string(&with_interval(3600)).unwrap();
    assert!(
        !yaml.contains("continuous") && !yaml.contains("deltainterval"),
        "{yaml}"
    );
    let five = conf(r#"{"continuous": true, "deltainterval": {"seconds": 5}}"#);
    assert!(five.check(&ctx).is_ok());
    assert_eq!(
        five.backupconfiguration.unwrap().delta_interval(),
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        err(&conf(r#"{"deltainterval": {"seconds": 5}}"#)),
        "spec.backupconfiguration.deltainterval: only applies with spec.backupconfiguration.continuous: true"
    );
    assert_eq!(
        err(&conf(r#"{"continuous": true, "deltainterval": {"seconds": 0, "nanos": 5}}"#)),
        "spec.backupconfiguration.deltainterval: delta interval must be greater than 1s, actual 5ns"
    );
    assert_eq!(
        err(&conf(r#"{"continuous": true, "deltainterval": {"seconds": 7200}}"#)),
        "spec.backupconfiguration.deltainterval: delta interval must be less than 1h0m0s, actual 2h0m0s"
    );
    assert_eq!(
        with_interval(3600)
            .backupconfiguration
            .unwrap()
            .delta_interval(),
        None
    );
}
