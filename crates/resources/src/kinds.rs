//! The type registry: every resource kind with its namespace, aliases,
//! columns, writer and validation.

use std::sync::OnceLock;

use serde_json::Value;

use crate::specs::{self, Kind, ValidationContext};
use crate::validate::{validate_typed, ValidationError};

/// One table column: a header and a dotted path into the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub header: &'static str,
    pub path: &'static str,
}

impl Column {
    pub const fn new(header: &'static str, path: &'static str) -> Self {
        Column { header, path }
    }

    /// Renders the column for one spec the way omnictl does: strings bare,
    /// default values blank (protobuf JSON leaves them out), objects as
    /// compact JSON with sorted keys.
    pub fn render(&self, spec: &Value) -> String {
        let mut v = spec;
        for part in self.path.split('.') {
            match v.get(part) {
                Some(next) => v = next,
                None => return String::new(),
            }
        }
        render_value(v)
    }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(false) => String::new(),
        Value::Bool(true) => "true".into(),
        Value::Number(n) if n.as_f64() == Some(0.0) => String::new(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => String::new(),
        Value::Object(_) if is_default(v) => String::new(),
        other => sorted_json(other),
    }
}

/// Whether a value is what protobuf JSON would leave out: zero, empty or
/// false, also nested (an unset timestamp is `{seconds: 0, nanos: 0}`).
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_default),
    }
}

fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), sorted_json(&o[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// Who writes resources of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Users, through the API.
    User,
    /// Only the named controller; the API refuses user writes.
    Controller(&'static str),
    /// Nobody: the resources are read from outside the state.
    External,
}

/// Everything the server and CLI know about a kind, untyped.
#[derive(Clone)]
pub struct TypeInfo {
    pub name: &'static str,
    pub default_namespace: &'static str,
    pub aliases: &'static [&'static str],
    pub columns: &'static [Column],
    pub writer: Writer,
    pub secret_fields: &'static [&'static str],
    validate: fn(&Value, &ValidationContext) -> Result<Value, ValidationError>,
}

impl std::fmt::Debug for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypeInfo")
            .field("name", &self.name)
            .finish()
    }
}

impl TypeInfo {
    pub fn of<K: Kind>() -> Self {
        TypeInfo {
            name: K::TYPE,
            default_namespace: K::DEFAULT_NAMESPACE,
            aliases: K::ALIASES,
            columns: K::COLUMNS,
            writer: K::WRITER,
            secret_fields: K::SECRET_FIELDS,
            validate: validate_typed::<K>,
        }
    }

    /// The short name: `EtcdBackupStatus` for `EtcdBackupStatuses.omni.sidero.dev`,
    /// as the TYPE column prints it.
    pub fn short_name(&self) -> String {
        let plural = self.name.split('.').next().unwrap_or(self.name);
        let singular = self.aliases.first().copied().unwrap_or("");
        // Keep the plural's capitalisation, cut to the singular's length.
        if singular.len() <= plural.len() && plural.to_lowercase().starts_with(singular) {
            plural[..singular.len()].to_string()
        } else {
            plural.to_string()
        }
    }

    /// Checks a spec against the kind's schema and rules; returns it
    /// normalised (defaults filled in, field order canonical).
    pub fn validate_spec(
        &self,
        spec: &Value,
        ctx: &ValidationContext,
    ) -> Result<Value, ValidationError> {
        (self.validate)(spec, ctx)
    }

    pub fn user_writable(&self) -> bool {
        self.writer == Writer::User
    }

    /// Blanks secret spec fields, for readers who may not see them: a
    /// string field, or each value of a map field (header names stay).
    pub fn redact(&self, spec: &mut Value) {
        fn blank(v: &mut Value) {
            if v.as_str().is_some_and(|s| !s.is_empty()) {
                *v = Value::String("<redacted>".into());
            }
        }
        for field in self.secret_fields {
            // `a.b` names field `b` of the object in field `a`.
            let (parents, last) = match field.rsplit_once('.') {
                Some((p, l)) => (Some(p), l),
                None => (None, *field),
            };
            let mut obj = Some(&mut *spec);
            for part in parents.into_iter().flat_map(|p| p.split('.')) {
                obj = obj.and_then(|v| v.get_mut(part));
            }
            if let Some(Value::Object(map)) = obj {
                match map.get_mut(last) {
                    Some(Value::Object(inner)) => inner.values_mut().for_each(blank),
                    Some(v) => blank(v),
                    None => {}
                }
            }
        }
    }
}

/// All registered kinds.
pub fn registry() -> &'static [TypeInfo] {
    static REGISTRY: OnceLock<Vec<TypeInfo>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        use specs::{
            alert, auth, backup, backup_drill, backup_retention, backup_store, backup_upload,
            cluster, machine,
        };
        vec![
            TypeInfo::of::<backup::EtcdBackupS3ConfigSpec>(),
            TypeInfo::of::<backup_store::EtcdBackupStoreSpec>(),
            TypeInfo::of::<backup_store::EtcdBackupCopyStatusSpec>(),
            TypeInfo::of::<backup::EtcdManualBackupSpec>(),
            TypeInfo::of::<backup::EtcdBackupStatusSpec>(),
            TypeInfo::of::<backup::EtcdBackupOverallStatusSpec>(),
            TypeInfo::of::<backup::EtcdBackupSpec>(),
            TypeInfo::of::<backup::BackupDataSpec>(),
            TypeInfo::of::<backup_retention::EtcdBackupRetentionStatusSpec>(),
            TypeInfo::of::<backup_drill::EtcdBackupDrillStatusSpec>(),
            TypeInfo::of::<backup_upload::EtcdBackupUploadSpec>(),
            TypeInfo::of::<cluster::ClusterSpec>(),
            TypeInfo::of::<cluster::MachineSetSpec>(),
            TypeInfo::of::<cluster::MachineSetNodeSpec>(),
            TypeInfo::of::<cluster::ClusterMachineSpec>(),
            TypeInfo::of::<cluster::ClusterMachineStatusSpec>(),
            TypeInfo::of::<machine::MachineSpec>(),
            TypeInfo::of::<machine::MachineStatusSpec>(),
            TypeInfo::of::<auth::ApiTokenSpec>(),
            TypeInfo::of::<alert::AlertReceiverSpec>(),
            TypeInfo::of::<alert::AlertStatusSpec>(),
        ]
    })
}

/// Finds a kind by full name (case-insensitive) or alias.
pub fn lookup(name: &str) -> Option<&'static TypeInfo> {
    let lower = name.to_ascii_lowercase();
    registry().iter().find(|t| {
        t.name.eq_ignore_ascii_case(name)
            || t.aliases.contains(&lower.as_str())
            || t.name
                .split('.')
                .next()
                .is_some_and(|p| p.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_by_full_name_and_aliases() {
        for name in [
            "EtcdBackupOverallStatuses.omni.sidero.dev",
            "etcdbackupoverallstatus",
            "etcdbackupoverallstatuses",
            "EtcdBackupOverallStatuses",
        ] {
            assert_eq!(
                lookup(name).unwrap().name,
                "EtcdBackupOverallStatuses.omni.sidero.dev"
            );
        }
        assert_eq!(
            lookup("etcdbackup").unwrap().name,
            "EtcdBackups.omni.sidero.dev"
        );
        assert_eq!(
            lookup("clustermachinestatus").unwrap().name,
            "ClusterMachineStatuses.omni.sidero.dev"
        );
        assert!(lookup("nosuchthing").is_none());
    }

    #[test]
    fn short_names_match_the_seed_table() {
        assert_eq!(lookup("etcdbackup").unwrap().short_name(), "EtcdBackup");
        assert_eq!(
            lookup("etcdbackupoverallstatus").unwrap().short_name(),
            "EtcdBackupOverallStatus"
        );
        assert_eq!(
            lookup("etcdbackupstatus").unwrap().short_name(),
            "EtcdBackupStatus"
        );
        assert_eq!(lookup("cluster").unwrap().short_name(), "Cluster");
        assert_eq!(
            lookup("etcdbackupretentionstatus").unwrap().short_name(),
            "EtcdBackupRetentionStatus"
        );
        assert_eq!(
            lookup("etcdbackupdrillstatuses").unwrap().short_name(),
            "EtcdBackupDrillStatus"
        );
        assert_eq!(
            lookup("etcdbackupuploads").unwrap().short_name(),
            "EtcdBackupUpload"
        );
    }

    #[test]
    fn columns_render_like_omnictl() {
        let spec =
            json!({"createdat": {"seconds": 1702166400, "nanos": 0}, "snapshot": "x", "size": 0});
        assert_eq!(
            Column::new("CREATED AT", "createdat").render(&spec),
            r#"{"nanos":0,"seconds":1702166400}"#
        );
        let overall = json!({"configurationname": "s3", "configurationerror": "not initialized",
            "lastbackupstatus": {"status": 0, "error": ""}, "configurationattempt": 0});
        assert_eq!(
            Column::new("X", "configurationerror").render(&overall),
            "not initialized"
        );
        assert_eq!(
            Column::new("X", "lastbackupstatus.status").render(&overall),
            ""
        );
        assert_eq!(
            Column::new("X", "configurationattempt").render(&overall),
            ""
        );
    }

    #[test]
    fn every_kind_has_two_aliases_and_validates_its_default() {
        for t in registry() {
            assert_eq!(t.aliases.len(), 2, "{}", t.name);
            assert!(t.name.ends_with(".omni.sidero.dev"));
        }
    }
}
