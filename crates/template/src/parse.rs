//! Reading a template: multi-document YAML, one document per `kind`.
//! Every problem is collected, not just the first.

use std::collections::HashMap;
use std::time::Duration;

use omni_resources::cron::{CronError, CronSchedule};
use omni_resources::duration::{parse_go_duration, ProtoDuration};
use omni_resources::retention::{RetentionPolicy, MAX_KEEP};
use omni_resources::specs::cluster::{DrillSchedule, RestoreDrill};
use omni_resources::validate::validate_id;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::model::{ClusterTemplate, MachineSetTemplate, Role, Template};
use crate::problem::{Problem, Problems};

const KINDS: &str = "Cluster, ControlPlane or Workers";

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCluster {
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kubernetes: RawVersion,
    #[serde(default)]
    talos: RawVersion,
    #[serde(default)]
    features: RawFeatures,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersion {
    #[serde(default)]
    version: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFeatures {
    #[serde(default)]
    enable_workload_proxy: bool,
    #[serde(default)]
    disk_encryption: bool,
    #[serde(default)]
    backup_configuration: Option<RawBackup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBackup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    keep_last: i64,
    #[serde(default)]
    keep_hourly: i64,
    #[serde(default)]
    keep_daily: i64,
    #[serde(default)]
    keep_weekly: i64,
    #[serde(default)]
    keep_monthly: i64,
    /// `true`, `false` or `{schedule | interval, timezone}`.
    #[serde(default)]
    restore_drill: Option<Value>,
    #[serde(default)]
    store: Option<String>,
    #[serde(default)]
    secondary_store: Option<String>,
    #[serde(default)]
    continuous: bool,
    /// A Go duration (`10s`); only with `continuous`.
    #[serde(default)]
    delta_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrillSchedule {
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachines {
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    machines: Vec<String>,
}

/// Problems of one document, with its number and kind.
struct Doc<'a> {
    number: usize,
    kind: Option<&'a str>,
    problems: &'a mut Vec<Problem>,
}

impl Doc<'_> {
    fn problem(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems
            .push(Problem::document(self.number, self.kind, field, message));
    }

    /// Deserializes the document, naming the field on failure.
    fn parse<T: DeserializeOwned>(&mut self, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let field = if path == "." { String::new() } else { path };
                self.problem(field, e.into_inner().to_string());
                None
            }
        }
    }
}

/// Parses and checks a template on its own (without the server's facts).
///
/// # Errors
/// Every problem found: YAML syntax, unknown or missing kinds, unknown
/// fields, missing names and versions, bad durations, missing or repeated
/// documents, invalid or repeated machine ids.
pub fn parse(text: &str) -> Result<Template, Problems> {
    let mut problems = Vec::new();
    let mut cluster: Option<ClusterTemplate> = None;
    let mut sets: HashMap<Role, MachineSetTemplate> = HashMap::new();
    let mut number = 0;
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        number += 1;
        let value = match Value::deserialize(document) {
            Ok(v) => v,
            Err(e) => {
                problems.push(Problem::document(
                    number,
                    None,
                    "",
                    format!("invalid YAML: {e}"),
                ));
                // The parser cannot resynchronise after a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        let mut doc = Doc {
            number,
            kind: None,
            problems: &mut problems,
        };
        let Some(map) = value.as_mapping() else {
            doc.problem("", format!("expected a mapping with a kind ({KINDS})"));
            continue;
        };
        let kind = match map.get("kind") {
            None | Some(Value::Null) => {
                doc.problem("kind", format!("is required ({KINDS})"));
                continue;
            }
            Some(Value::String(k)) => k.clone(),
            Some(other) => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        match kind.as_str() {
            "Cluster" => {
                doc.kind = Some("Cluster");
                let parsed = parse_cluster(&mut doc, value);
                match (&cluster, parsed) {
                    (Some(first), _) => doc.problem(
                        "kind",
                        format!(
                            "only one Cluster document is allowed (the first is document {})",
                            first.document
                        ),
                    ),
                    (None, Some(c)) => cluster = Some(c),
                    (None, None) => {}
                }
            }
            "ControlPlane" | "Workers" => {
                let role = if kind == "ControlPlane" {
                    Role::ControlPlane
                } else {
                    Role::Worker
                };
                doc.kind = Some(role.kind());
                let parsed = parse_machines(&mut doc, value, role);
                match (sets.get(&role).and_then(|s| s.document), parsed) {
                    (Some(first), _) => doc.problem(
                        "kind",
                        format!(
                            "only one {} document is allowed (the first is document {first})",
                            role.kind()
                        ),
                    ),
                    (None, Some(set)) => {
                        sets.insert(role, set);
                    }
                    (None, None) => {
                        // Remember the document so a repeat is still reported.
                        sets.insert(
                            role,
                            MachineSetTemplate {
                                document: Some(number),
                                role,
                                machines: Vec::new(),
                            },
                        );
                    }
                }
            }
            other => doc.problem("kind", format!("unknown kind {other:?}; expected {KINDS}")),
        }
    }
    if number == 0 || (cluster.is_none() && sets.is_empty() && problems.is_empty()) {
        problems.push(Problem::template("no documents"));
        return Err(Problems(problems));
    }
    if cluster.is_none() && !problems.iter().any(|p| is_kind(p, "Cluster")) {
        problems.push(Problem::template("a Cluster document is required"));
    }
    if !sets.contains_key(&Role::ControlPlane) {
        problems.push(Problem::template("a ControlPlane document is required"));
    }
    let control_plane = sets.remove(&Role::ControlPlane);
    let workers = sets.remove(&Role::Worker).unwrap_or(MachineSetTemplate {
        document: None,
        role: Role::Worker,
        machines: Vec::new(),
    });
    duplicate_machines(control_plane.iter().chain([&workers]), &mut problems);
    let (Some(cluster), Some(control_plane)) = (cluster, control_plane) else {
        return Err(Problems(problems));
    };
    let template = Template {
        cluster,
        control_plane,
        workers,
    };
    Problems::check(problems, template)
}

fn is_kind(p: &Problem, kind: &str) -> bool {
    matches!(&p.location, crate::problem::Location::Document { kind: Some(k), .. } if k == kind)
}

fn parse_cluster(doc: &mut Doc<'_>, value: Value) -> Option<ClusterTemplate> {
    let raw: RawCluster = doc.parse(value)?;
    let before = doc.problems.len();
    if raw.name.is_empty() {
        doc.problem("name", "is required");
    } else if let Err(e) = validate_id(&raw.name) {
        doc.problem("name", e.message);
    }
    let kubernetes_version = version(doc, "kubernetes.version", &raw.kubernetes.version);
    let checked = doc.problems.len();
    let talos_version = version(doc, "talos.version", &raw.talos.version);
    // The reference's rules and wording: templates write Talos versions with
    // their `v`, and disk encryption came with Talos 1.5. One problem per
    // field: a version that is no version at all is reported as such.
    let talos_ok = doc.problems.len() == checked;
    if talos_ok && !raw.talos.version.starts_with('v') {
        doc.problem("talos.version", "version should start with 'v'");
    }
    if talos_ok && raw.features.disk_encryption && before_1_5(&talos_version) {
        doc.problem(
            "features.diskEncryption",
            "disk encryption is supported only for Talos version >= 1.5.0",
        );
    }
    let mut backup_interval = None;
    let mut backup_schedule = None;
    let mut backup_timezone = None;
    let mut backup_retention = RetentionPolicy::default();
    let mut restore_drill = RestoreDrill::Off;
    let mut backup_store = None;
    let mut backup_secondary_store = None;
    let mut continuous = None;
    if let Some(backup) = raw.features.backup_configuration {
        let base = "features.backupConfiguration";
        backup_interval = cadence(
            doc,
            base,
            backup.interval.as_deref(),
            backup.schedule.as_deref(),
            backup.timezone.as_deref(),
        );
        backup_schedule = backup.schedule.clone();
        backup_timezone = backup.timezone.clone();
        backup_retention = retention(doc, &backup);
        restore_drill = drill(doc, backup.restore_drill.clone());
        (backup_store, backup_secondary_store) = stores(doc, &backup);
        continuous = continuous_of(doc, &backup);
    }
    (doc.problems.len() == before).then_some(ClusterTemplate {
        document: doc.number,
        name: raw.name,
        kubernetes_version,
        talos_version,
        enable_workload_proxy: raw.features.enable_workload_proxy,
        disk_encryption: raw.features.disk_encryption,
        backup_interval,
        backup_schedule,
        backup_timezone,
        backup_retention,
        restore_drill,
        backup_store,
        backup_secondary_store,
        continuous,
    })
}

/// `store` and `secondaryStore`: store names, the secondary another one.
fn stores(doc: &mut Doc<'_>, backup: &RawBackup) -> (Option<String>, Option<String>) {
    use omni_resources::specs::backup_store::{check_store_name, DEFAULT_STORE};
    let base = "features.backupConfiguration";
    for (name, value) in [
        ("store", &backup.store),
        ("secondaryStore", &backup.secondary_store),
    ] {
        if let Some(v) = value {
            if let Err(e) = check_store_name(&format!("{base}.{name}"), v) {
                doc.problem(e.field, e.message);
            }
        }
    }
    let primary = backup.store.as_deref().unwrap_or(DEFAULT_STORE);
    if backup.secondary_store.as_deref() == Some(primary) {
        doc.problem(
            format!("{base}.secondaryStore"),
            format!("must differ from the primary store {primary:?}"),
        );
    }
    (backup.store.clone(), backup.secondary_store.clone())
}

/// `continuous` and `deltaInterval`: `None` when continuous backup is off,
/// else the delta interval asked for (`None` inside: the default).
fn continuous_of(doc: &mut Doc<'_>, backup: &RawBackup) -> Option<Option<Duration>> {
    let field = "features.backupConfiguration.deltaInterval";
    let interval = match backup.delta_interval.as_deref().map(parse_go_duration) {
        None => None,
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            doc.problem(field, e.to_string());
            return None;
        }
    };
    if interval.is_some() && !backup.continuous {
        doc.problem(
            field,
            "only applies with features.backupConfiguration.continuous: true",
        );
    }
    backup.continuous.then_some(interval)
}

/// Checks an `interval` / `schedule` / `timezone` trio under `base`: at
/// most one of the first two, a zone only with a schedule, each one
/// parsing. Returns the interval. The server's bounds are checked by the
/// server when the cluster is written.
fn cadence(
    doc: &mut Doc<'_>,
    base: &str,
    interval: Option<&str>,
    schedule: Option<&str>,
    timezone: Option<&str>,
) -> Option<Duration> {
    if interval.is_some() && schedule.is_some() {
        doc.problem(
            base,
            format!("{base}.interval and {base}.schedule are mutually exclusive: set one of them"),
        );
    }
    if timezone.is_some() && schedule.is_none() {
        doc.problem(
            format!("{base}.timezone"),
            format!("only applies with {base}.schedule"),
        );
    }
    if let Some(pattern) = schedule {
        match CronSchedule::parse(pattern, timezone) {
            Ok(_) => {}
            Err(e @ CronError::Zone(_)) => doc.problem(format!("{base}.timezone"), e.to_string()),
            Err(e) => doc.problem(format!("{base}.schedule"), e.to_string()),
        }
    }
    match interval.map(parse_go_duration)? {
        Ok(d) => Some(d),
        Err(e) => {
            doc.problem(format!("{base}.interval"), e.to_string());
            None
        }
    }
}

/// `restoreDrill`: a bool, or a schedule of its own.
fn drill(doc: &mut Doc<'_>, raw: Option<Value>) -> RestoreDrill {
    let base = "features.backupConfiguration.restoreDrill";
    let value = match raw {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return RestoreDrill::Off,
        Some(Value::Bool(true)) => return RestoreDrill::AfterEachBackup,
        Some(v @ Value::Mapping(_)) => v,
        Some(_) => {
            doc.problem(
                base,
                "expected true, false, or a map with schedule or interval",
            );
            return RestoreDrill::Off;
        }
    };
    let raw: RawDrillSchedule = match serde_path_to_error::deserialize(value) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                base.to_string()
            } else {
                format!("{base}.{path}")
            };
            doc.problem(field, e.into_inner().to_string());
            return RestoreDrill::Off;
        }
    };
    let named = raw
        .schedule
        .as_deref()
        .is_some_and(|s| matches!(s.trim(), "hourly" | "daily" | "weekly"));
    let interval = if named {
        // A word, not a cron pattern: only the exclusivity check applies.
        if raw.interval.is_some() {
            doc.problem(
                base,
                format!(
                    "{base}.interval and {base}.schedule are mutually exclusive: set one of them"
                ),
            );
        }
        if raw.timezone.is_some() {
            doc.problem(
                format!("{base}.timezone"),
                "only applies to a cron pattern, not to hourly, daily or weekly",
            );
        }
        None
    } else {
        if raw.schedule.is_none() && raw.interval.is_none() {
            let words = "hourly, daily, weekly or a cron pattern";
            doc.problem(
                base,
                format!("set {base}.schedule ({words}) or {base}.interval"),
            );
        }
        cadence(
            doc,
            base,
            raw.interval.as_deref(),
            raw.schedule.as_deref(),
            raw.timezone.as_deref(),
        )
    };
    RestoreDrill::Scheduled(DrillSchedule {
        schedule: raw.schedule,
        interval: interval.map(ProtoDuration::from_std),
        timezone: raw.timezone,
    })
}

/// The retention counts, each within `0..=MAX_KEEP`.
fn retention(doc: &mut Doc<'_>, b: &RawBackup) -> RetentionPolicy {
    let mut count = |name: &str, v: i64| {
        let field = format!("features.backupConfiguration.{name}");
        if v < 0 {
            doc.problem(field, format!("must not be negative, got {v}"));
        } else if v > MAX_KEEP {
            doc.problem(field, format!("must be at most {MAX_KEEP}, got {v}"));
        }
        v.clamp(0, MAX_KEEP) as u32
    };
    RetentionPolicy {
        keeplast: count("keepLast", b.keep_last),
        keephourly: count("keepHourly", b.keep_hourly),
        keepdaily: count("keepDaily", b.keep_daily),
        keepweekly: count("keepWeekly", b.keep_weekly),
        keepmonthly: count("keepMonthly", b.keep_monthly),
    }
}

/// Whether a checked version (without `v`) comes before 1.5.0; a
/// pre-release of 1.5.0 does. Unparsable versions are reported elsewhere.
fn before_1_5(version: &str) -> bool {
    let (core, pre) = version.split_once('-').unwrap_or((version, ""));
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    match (
        parts.next().flatten(),
        parts.next().flatten(),
        parts.next().flatten(),
    ) {
        (Some(major), Some(minor), Some(patch)) => {
            (major, minor, patch) < (1, 5, 0)
                || ((major, minor, patch) == (1, 5, 0) && !pre.is_empty())
        }
        _ => false,
    }
}

/// Checks a version like `v1.28.2` and returns it without the `v`.
fn version(doc: &mut Doc<'_>, field: &str, raw: &str) -> String {
    if raw.is_empty() {
        doc.problem(field, "is required");
        return String::new();
    }
    let bare = raw.strip_prefix('v').unwrap_or(raw);
    let (core, pre) = bare.split_once('-').unwrap_or((bare, ""));
    let parts: Vec<&str> = core.split('.').collect();
    let core_ok = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let pre_ok = pre
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !core_ok || !pre_ok || bare.ends_with('-') {
        doc.problem(field, format!("{raw:?} is not a version like v1.28.2"));
    }
    bare.to_string()
}

fn parse_machines(doc: &mut Doc<'_>, value: Value, role: Role) -> Option<MachineSetTemplate> {
    let raw: RawMachines = doc.parse(value)?;
    let before = doc.problems.len();
    if role == Role::ControlPlane && raw.machines.is_empty() {
        doc.problem("machines", "at least one machine is required");
    }
    for (i, m) in raw.machines.iter().enumerate() {
        if let Err(e) = validate_id(m) {
            doc.problem(format!("machines[{i}]"), e.message);
        }
    }
    (doc.problems.len() == before).then_some(MachineSetTemplate {
        document: Some(doc.number),
        role,
        machines: raw.machines,
    })
}

/// A machine may be listed once in the whole template.
fn duplicate_machines<'a>(
    sets: impl Iterator<Item = &'a MachineSetTemplate>,
    problems: &mut Vec<Problem>,
) {
    let mut seen: HashMap<&str, (Role, Option<usize>, usize)> = HashMap::new();
    let machines = sets.flat_map(|set| {
        set.machines
            .iter()
            .enumerate()
            .map(move |(i, m)| (set, i, m.as_str()))
    });
    for (set, i, m) in machines {
        match seen.get(m) {
            Some((role, doc, j)) => problems.push(Problem::document(
                set.document.unwrap_or(0),
                Some(set.role.kind()),
                format!("machines[{i}]"),
                format!(
                    "machine {m:?} is listed more than once (first in document {} ({}) machines[{j}])",
                    doc.unwrap_or(0),
                    role.kind()
                ),
            )),
            None => {
                seen.insert(m, (set.role, set.document, i));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
