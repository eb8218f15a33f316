//! Resource metadata and the untyped resource the state stores.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time as protobuf's `Timestamp` renders it: `{seconds, nanos}`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    #[serde(default)]
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

impl Timestamp {
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            },
            Err(e) => {
                let d = e.duration();
                Timestamp {
                    seconds: -(d.as_secs() as i64),
                    nanos: 0,
                }
            }
        }
    }

    pub fn from_unix(seconds: i64) -> Self {
        Timestamp { seconds, nanos: 0 }
    }

    pub fn from_unix_ms(ms: i64) -> Self {
        Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.seconds == 0 && self.nanos == 0
    }

    /// Seconds with a fraction, for arithmetic on schedules.
    pub fn as_secs_f64(&self) -> f64 {
        self.seconds as f64 + self.nanos as f64 / 1e9
    }
}

/// Lifecycle phase: a resource being destroyed waits in `tearingDown` until
/// its finalizers are gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    #[default]
    Running,
    TearingDown,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// Metadata common to every resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    #[serde(default)]
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: String,
    /// Optimistic concurrency version; 0 means "not read from the state"
    /// (and prints as `undefined`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub version: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    #[serde(default)]
    pub phase: Phase,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::unique::string_map"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::unique::string_map"
    )]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Timestamp>,
}

/// An untyped resource: metadata plus the spec as JSON. The state stores
/// these; typed access goes through [`crate::specs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub metadata: Metadata,
    #[serde(default, deserialize_with = "crate::unique::value")]
    pub spec: serde_json::Value,
}

impl Resource {
    pub fn new(kind: &str, namespace: &str, id: &str, spec: serde_json::Value) -> Self {
        Resource {
            metadata: Metadata {
                namespace: namespace.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
                ..Metadata::default()
            },
            spec,
        }
    }

    /// Builds a resource from a typed spec.
    pub fn from_spec<S: Serialize>(kind: &str, namespace: &str, id: &str, spec: &S) -> Self {
        let spec = serde_json::to_value(spec).unwrap_or(serde_json::Value::Null);
        Self::new(kind, namespace, id, spec)
    }

    /// Reads the spec as a typed value.
    pub fn spec_as<S: serde::de::DeserializeOwned>(&self) -> Result<S, serde_json::Error> {
        serde_json::from_value(self.spec.clone())
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            namespace: self.metadata.namespace.clone(),
            kind: self.metadata.kind.clone(),
            id: self.metadata.id.clone(),
        }
    }
}

/// The identity of a resource: namespace, type and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub namespace: String,
    pub kind: String,
    pub id: String,
}

impl ResourceKey {
    pub fn new(namespace: &str, kind: &str, id: &str) -> Self {
        ResourceKey {
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            id: id.to_string(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({}/{})", self.kind, self.namespace, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_yaml_field_names_match_the_seed() {
        let mut r = Resource::new(
            "EtcdBackupStatuses.omni.sidero.dev",
            "ephemeral",
            "c1",
            serde_json::json!({}),
        );
        r.metadata.version = 1;
        r.metadata.owner = "EtcdBackupController".into();
        let v = serde_json::to_value(&r).unwrap();
        let m = v["metadata"].as_object().unwrap();
        let keys: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["namespace", "type", "id", "version", "owner", "phase"]
        );
        assert_eq!(m["phase"], "running");
    }

    #[test]
    fn unknown_metadata_field_is_rejected() {
        let err = serde_json::from_value::<Resource>(serde_json::json!({
            "metadata": {"type": "x", "id": "a", "nmespace": "default"}, "spec": {}
        }))
        .unwrap_err();
        assert!(err.to_string().contains("nmespace"), "{err}");
    }
}
