//! The cluster page: status, backups, settings, drills and a chart.

use std::collections::{BTreeMap, HashMap};

use maud::{html, Markup};
use omni_api::auth::Role;
use omni_resources::specs::backup::EtcdBackupSpec;
use omni_resources::specs::cluster::{BackupConfiguration, RestoreDrill};

use crate::live::DrillEntry;
use crate::model::{human_bytes, human_duration, status_word, utc, Row};
use crate::pages::{csrf_field, layout, rows_table, Viewer};

/// The settings form as shown: the stored values, or what the user sent
/// back with the errors it got.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default)]
pub struct SettingsForm {
    pub interval: String,
    /// A cron pattern, exclusive with the interval, and its zone.
    pub schedule: String,
    pub timezone: String,
    pub keeplast: String,
    pub keephourly: String,
    pub keepdaily: String,
    pub keepweekly: String,
    pub keepmonthly: String,
}

pub const KEEP_FIELDS: [(&str, &str); 5] = [
    ("keeplast", "Keep last"),
    ("keephourly", "Keep hourly"),
    ("keepdaily", "Keep daily"),
    ("keepweekly", "Keep weekly"),
    ("keepmonthly", "Keep monthly"),
];

impl SettingsForm {
    pub fn from_config(c: &BackupConfiguration) -> SettingsForm {
        let n = |v: i64| if v == 0 { String::new() } else { v.to_string() };
        let interval = c
            .interval
            .and_then(|i| i.to_std())
            .filter(|d| !d.is_zero())
            .map(omni_resources::duration::format_go_duration)
            .unwrap_or_default();
        SettingsForm {
            interval,
            schedule: c.schedule.clone().unwrap_or_default(),
            timezone: c.timezone.clone().unwrap_or_default(),
            keeplast: n(c.keeplast),
            keephourly: n(c.keephourly),
            keepdaily: n(c.keepdaily),
            keepweekly: n(c.keepweekly),
            keepmonthly: n(c.keepmonthly),
        }
    }

    pub fn get(&self, field: &str) -> &str {
        match field {
            "interval" => &self.interval,
            "schedule" => &self.schedule,
            "timezone" => &self.timezone,
            "keeplast" => &self.keeplast,
            "keephourly" => &self.keephourly,
            "keepdaily" => &self.keepdaily,
            "keepweekly" => &self.keepweekly,
            _ => &self.keepmonthly,
        }
    }
}

/// Errors shown beside the fields they name, plus one for the whole form.
#[derive(Debug, Default)]
pub struct FormErrors {
    pub fields: HashMap<String, String>,
    pub general: Option<String>,
}

impl FormErrors {
    /// Places an API message (`spec.backupconfiguration.interval: ...`)
    /// beside its field; anything else goes to the whole form.
    pub fn from_api(message: &str, prefix: &str) -> FormErrors {
        let mut e = FormErrors::default();
        match message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once(": "))
        {
            Some((field, text)) if !field.contains(' ') => {
                e.fields.insert(field.to_string(), text.to_string());
            }
            _ => e.general = Some(message.to_string()),
        }
        e
    }

    pub fn field(field: &str, text: String) -> FormErrors {
        let mut e = FormErrors::default();
        e.fields.insert(field.to_string(), text);
        e
    }
}

pub struct ClusterView<'a> {
    pub row: &'a Row,
    pub config: Option<&'a BackupConfiguration>,
    pub form: SettingsForm,
    pub errors: FormErrors,
    pub notice: Option<String>,
    pub backups: &'a Result<Vec<(String, EtcdBackupSpec)>, String>,
    pub kept: &'a [String],
    pub store: &'a str,
    pub durations: &'a BTreeMap<i64, i64>,
    pub drills: &'a [DrillEntry],
    pub now: i64,
}

pub fn page(v: &Viewer, c: &ClusterView) -> Markup {
    let name = &c.row.cluster;
    let base = format!("/ui/clusters/{name}");
    let body = html! {
        p { a href="/" { "← Fleet" } }
        h1 { "Cluster " (name) }
        @if let Some(n) = &c.notice { p.notice role="status" { (n) } }
        @if let Some(e) = &c.errors.general { p.error role="alert" #form-error { (e) } }
        (rows_table(std::slice::from_ref(c.row), c.now, "Backup state of this cluster"))
        @if v.can(Role::Operator) {
            form.inline method="post" action={(base) "/backup"} {
                (csrf_field(v))
                button #backup-now type="submit" { "Back up now" }
            }
        }
        div #backups data-src={(base) "/backups"} data-cluster=(name) { (backups(v, c)) }
        section aria-labelledby="h-settings" {
            h2 #h-settings { "Settings" }
            (settings(v, c, &base))
        }
        section aria-labelledby="h-drills" {
            h2 #h-drills { "Restore drills" }
            (drills(c))
        }
    };
    layout(&format!("Cluster {name}"), Some(v), "fleet", body)
}

/// The backups table and the chart (also served alone, to refresh them
/// live when a backup lands).
pub fn backups(v: &Viewer, c: &ClusterView) -> Markup {
    html! {
        section aria-labelledby="h-backups" {
            h2 #h-backups { "Backups" }
            (backup_table(v, c))
        }
        section aria-labelledby="h-chart" {
            h2 #h-chart { "Size and duration" }
            (chart(c))
        }
    }
}

fn backup_table(v: &Viewer, c: &ClusterView) -> Markup {
    let name = &c.row.cluster;
    html! {
        @match c.backups {
            Err(e) => p.error role="alert" { "listing the store failed: " (e) },
            Ok(list) if list.is_empty() => p.muted { "No backups stored yet." },
            Ok(list) => div.scroll { table #backup-list {
                caption.sr { "Stored backups, newest first" }
                thead { tr {
                    th scope="col" { "ID" } th scope="col" { "Created" } th scope="col" { "Size" }
                    th scope="col" { "Pinned" } th scope="col" { "Stored in" }
                    @if v.can(Role::Operator) { th scope="col" { "Download" } }
                } }
                tbody { @for (id, b) in list {
                    tr data-backup=(id) {
                        th scope="row" { code { (id) } }
                        td { (utc(b.createdat.seconds)) }
                        td { (human_bytes(b.size)) }
                        td { @if c.kept.contains(id) { "pinned" } @else { span.muted { "no" } } }
                        td { (c.store) ": " code { (b.snapshot) } }
                        @if v.can(Role::Operator) {
                            td { a.download href={"/ui/clusters/" (name) "/backups/" (id) "/download"}
                                download={(id) ".db"} { "snapshot" span.sr { " of " (id) } } }
                        }
                    }
                } }
            } },
        }
    }
}

fn settings(v: &Viewer, c: &ClusterView, base: &str) -> Markup {
    let drill_on = c.config.is_some_and(|b| !b.restoredrill.is_off());
    let drill_words = match c.config.map(|b| &b.restoredrill) {
        Some(RestoreDrill::Scheduled(d)) => {
            match (&d.schedule, d.interval.and_then(|i| i.to_std())) {
                (Some(s), _) => format!("on, on their own schedule ({s})"),
                (None, Some(i)) => format!(
                    "on, every {}",
                    omni_resources::duration::format_go_duration(i)
                ),
                (None, None) => "on".to_string(),
            }
        }
        Some(RestoreDrill::AfterEachBackup) => "on, after each backup".to_string(),
        _ => "off".to_string(),
    };
    let err = |f: &str| {
        c.errors
            .fields
            .get(&format!("spec.backupconfiguration.{f}"))
    };
    html! {
        @if v.can(Role::Admin) {
            form.card #settings method="post" action={(base) "/settings"} novalidate {
                (csrf_field(v))
                (field("interval", "Backup interval (e.g. 1h, 6h; empty turns automatic backups off)",
                    "text", c.form.get("interval"), err("interval")))
                (field("schedule", "Or a cron schedule (e.g. 0 */6 * * *; instead of an interval)",
                    "text", c.form.get("schedule"), err("schedule")))
                (field("timezone", "Schedule time zone (e.g. Europe/Berlin; empty: UTC)",
                    "text", c.form.get("timezone"), err("timezone")))
                fieldset {
                    legend { "Retention (empty: server default)" }
                    @for (f, label) in KEEP_FIELDS {
                        (field(f, label, "number", c.form.get(f), err(f)))
                    }
                }
                button type="submit" { "Save settings" }
            }
        } @else {
            dl.card #settings-view {
                dt { "Backup interval" } dd { @if c.form.interval.is_empty() { "off" } @else { (c.form.interval) } }
                @if !c.form.schedule.is_empty() {
                    dt { "Backup schedule" } dd { (c.form.schedule) " " (if c.form.timezone.is_empty() { "UTC" } else { c.form.timezone.as_str() }) }
                }
                @for (f, label) in KEEP_FIELDS {
                    dt { (label) } dd { @if c.form.get(f).is_empty() { "server default" } @else { (c.form.get(f)) } }
                }
            }
        }
        @if v.can(Role::Operator) {
            form.inline #drill-form method="post" action={(base) "/drill"} {
                (csrf_field(v))
                input type="hidden" name="restoredrill" value=(if drill_on { "off" } else { "on" });
                "Restore drills are " strong { (drill_words) } ". "
                button type="submit" { (if drill_on { "Turn drills off" } else { "Turn drills on" }) }
            }
        } @else {
            p { "Restore drills are " strong { (drill_words) } "." }
        }
        @if v.can(Role::Admin) {
            form.inline method="post" action={(base) "/key"} {
                (csrf_field(v))
                button type="submit" { "Export backup key" }
                span.muted { " (age identity: opens every backup of this cluster)" }
            }
        }
    }
}

fn field(name: &str, label: &str, kind: &str, value: &str, error: Option<&String>) -> Markup {
    let err_id = format!("{name}-error");
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type=(kind) value=(value) min=[(kind == "number").then_some("0")]
                aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.as_str())];
            @if let Some(e) = error { p.error id=(err_id) role="alert" { (e) } }
        }
    }
}

fn drills(c: &ClusterView) -> Markup {
    html! {
        @if c.drills.is_empty() {
            p.muted { "No drill finished since the server started." }
        } @else {
            div.scroll { table #drill-list {
                caption.sr { "Restore drills, newest first" }
                thead { tr { th scope="col" { "Finished" } th scope="col" { "Result" } th scope="col" { "Backup" }
                    th scope="col" { "Took" } th scope="col" { "Error" } } }
                tbody { @for d in c.drills { tr {
                    td { (utc(d.finished)) } td { (status_word(d.status)) } td { code { (d.backup) } }
                    td { (format!("{:.1}s", d.seconds)) } td { (d.error) }
                } } }
            } }
        }
    }
}

/// Sizes of the stored backups and the durations the console saw, oldest
/// left; inline SVG, no script.
fn chart(c: &ClusterView) -> Markup {
    let mut points: Vec<(i64, u64)> = match c.backups {
        Ok(list) => list
            .iter()
            .map(|(_, b)| (b.createdat.seconds, b.size))
            .collect(),
        Err(_) => Vec::new(),
    };
    points.sort_unstable();
    let points = &points[points.len().saturating_sub(40)..];
    if points.is_empty() {
        return html! { p.muted { "The chart appears with the first backup." } };
    }
    let (w, h, pad) = (600.0_f64, 160.0_f64, 24.0_f64);
    let max_size = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let max_dur = c.durations.values().copied().max().unwrap_or(0).max(1) as f64;
    let step = (w - 2.0 * pad) / points.len() as f64;
    let x = |i: usize| pad + step * (i as f64 + 0.5);
    let bar_w = (step * 0.6).clamp(2.0, 40.0);
    let summary = format!(
        "{} backup{}; newest {}, largest {}",
        points.len(),
        if points.len() == 1 { "" } else { "s" },
        human_bytes(points[points.len() - 1].1),
        human_bytes(max_size as u64)
    );
    html! {
        figure.chart {
            svg #chart viewBox={"0 0 " (w) " " (h)} role="img" aria-label=(summary) {
                title { (summary) }
                line.axis x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) {}
                @for (i, (at, size)) in points.iter().enumerate() {
                    @let bh = (h - 2.0 * pad) * (*size as f64 / max_size);
                    rect.size x=(x(i) - bar_w / 2.0) y=(h - pad - bh) width=(bar_w) height=(bh.max(1.0)) {
                        title { (utc(*at)) ": " (human_bytes(*size)) }
                    }
                    @if let Some(d) = c.durations.get(at) {
                        @let dy = h - pad - (h - 2.0 * pad) * (*d as f64 / max_dur);
                        circle.duration cx=(x(i)) cy=(dy) r="4" { title { (utc(*at)) ": took " (human_duration(*d)) } }
                    }
                }
                text x=(pad) y="14" { "size (bars), max " (human_bytes(max_size as u64)) }
                text x=(w - pad) y="14" text-anchor="end" { "duration (dots), max " (human_duration(max_dur as i64)) }
            }
            figcaption.muted { (summary) ". Durations are those seen since the server started." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_messages_land_beside_their_field() {
        let e = FormErrors::from_api(
            "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 30m0s",
            "",
        );
        assert_eq!(
            e.fields["spec.backupconfiguration.interval"],
            "backup interval must be greater than 1h0m0s, actual 30m0s"
        );
        assert!(e.general.is_none());
        let e = FormErrors::from_api("incorrect settings for s3 client: access denied", "");
        assert!(e.fields.is_empty());
        assert_eq!(
            e.general.as_deref(),
            Some("incorrect settings for s3 client: access denied")
        );
    }
}
