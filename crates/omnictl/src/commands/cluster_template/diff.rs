//! Unified diffs of resources, as `cluster template diff` prints them.
//!
//! A resource is rendered the way Omni's template diff renders it: metadata
//! as COSI marshals it (namespace, type, id, version, owner, phase, created,
//! updated, then labels, annotations and finalizers when present), then the
//! spec. An unset cluster `backupconfiguration` shows as `null`.

use omni_resources::specs::cluster::ClusterSpec;
use omni_resources::specs::Kind;
use omni_resources::{Resource, Timestamp};
use serde_json::{Map, Value};
use similar::TextDiff;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// A resource as YAML for the diff.
pub fn render(r: &Resource) -> String {
    let m = &r.metadata;
    let mut meta = Map::new();
    meta.insert("namespace".into(), m.namespace.clone().into());
    meta.insert("type".into(), m.kind.clone().into());
    meta.insert("id".into(), m.id.clone().into());
    let version = if m.version == 0 {
        Value::from("undefined")
    } else {
        Value::from(m.version)
    };
    meta.insert("version".into(), version);
    meta.insert("owner".into(), m.owner.clone().into());
    meta.insert(
        "phase".into(),
        serde_json::to_value(m.phase).unwrap_or(Value::Null),
    );
    if let Some(t) = m.created {
        meta.insert("created".into(), rfc3339(t).into());
    }
    if let Some(t) = m.updated {
        meta.insert("updated".into(), rfc3339(t).into());
    }
    if !m.labels.is_empty() {
        meta.insert("labels".into(), string_map(&m.labels));
    }
    if !m.annotations.is_empty() {
        meta.insert("annotations".into(), string_map(&m.annotations));
    }
    if !m.finalizers.is_empty() {
        meta.insert("finalizers".into(), m.finalizers.clone().into());
    }
    let mut spec = r.spec.clone();
    if m.kind == ClusterSpec::TYPE {
        if let Value::Object(fields) = &mut spec {
            fields.entry("backupconfiguration").or_insert(Value::Null);
        }
    }
    let mut doc = Map::new();
    doc.insert("metadata".into(), Value::Object(meta));
    doc.insert("spec".into(), spec);
    crate::yaml::to_string(&Value::Object(doc))
}

fn string_map(m: &std::collections::BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

/// The unified diff from `old` to `new` (either may be absent: a creation
/// diffs against `/dev/null`, a deletion to it); empty when they render
/// the same.
pub fn unified(old: Option<&Resource>, new: Option<&Resource>) -> String {
    let old_text = old.map(render).unwrap_or_default();
    let new_text = new.map(render).unwrap_or_default();
    let name = |r: Option<&Resource>| {
        r.map(|r| r.key().to_string())
            .unwrap_or_else(|| "/dev/null".into())
    };
    TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(CONTEXT)
        .header(&name(old), &name(new))
        .to_string()
}

/// `2023-12-10T00:00:00Z`, as Go's `time.RFC3339` prints UTC times.
pub fn rfc3339(t: Timestamp) -> String {
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(rfc3339(Timestamp::from_unix(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_unix(1_702_166_400)),
            "2023-12-10T00:00:00Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix(951_825_599)),
            "2000-02-29T11:59:59Z"
        );
        assert_eq!(rfc3339(Timestamp::from_unix(-1)), "1969-12-31T23:59:59Z");
    }

    /// The seed's cluster, as stored after a template created it without
    /// backups; the seed's four finalizers.
    fn seed_cluster(finalizers: &[&str]) -> Resource {
        let mut r = Resource::new(
            ClusterSpec::TYPE,
            "default",
            "talos-default",
            json!({"installimage": "", "kubernetesversion": "1.28.2", "talosversion": "1.5.5",
                   "features": {"enableworkloadproxy": false, "diskencryption": false}}),
        );
        r.metadata.version = 5;
        r.metadata.created = Some(Timestamp::from_unix(1_702_166_400));
        r.metadata.updated = Some(Timestamp::from_unix(1_702_166_401));
        r.metadata.finalizers = finalizers.iter().map(|s| s.to_string()).collect();
        r
    }

    const SEED_DIFF: &str = "\
--- Clusters.omni.sidero.dev(default/talos-default)
+++ Clusters.omni.sidero.dev(default/talos-default)
@@ -19,4 +19,7 @@
   features:
     enableworkloadproxy: false
     diskencryption: false
-  backupconfiguration: null
+  backupconfiguration:
+    interval:
+      seconds: 3600
+      nanos: 0
";

    fn with_backups(old: &Resource) -> Resource {
        let mut new = old.clone();
        new.spec["backupconfiguration"] = json!({"interval": {"seconds": 3600, "nanos": 0}});
        new
    }

    #[test]
    fn the_seed_diff_with_the_seed_finalizers() {
        let old = seed_cluster(&[
            "KubernetesUpgradeStatusController",
            "TalosUpgradeStatusController",
            "SecretsController",
            "ClusterController",
        ]);
        assert_eq!(unified(Some(&old), Some(&with_backups(&old))), SEED_DIFF);
    }

    #[test]
    fn the_seed_diff_with_our_finalizer() {
        let old = seed_cluster(&["ClusterController"]);
        let expected = SEED_DIFF.replace("@@ -19,4 +19,7 @@", "@@ -16,4 +16,7 @@");
        assert_eq!(unified(Some(&old), Some(&with_backups(&old))), expected);
    }

    #[test]
    fn metadata_renders_like_cosi() {
        let mut r = seed_cluster(&["ClusterController"]);
        r.metadata.labels.insert("a".into(), "b".into());
        let text = render(&r);
        let expected_start = "\
metadata:
  namespace: default
  type: Clusters.omni.sidero.dev
  id: talos-default
  version: 5
  owner: \"\"
  phase: running
  created: \"2023-12-10T00:00:00Z\"
  updated: \"2023-12-10T00:00:01Z\"
  labels:
    a: b
  finalizers:
    - ClusterController
spec:
  installimage: \"\"
";
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.ends_with("  backupconfiguration: null\n"), "{text}");
    }

    #[test]
    fn creations_and_deletions_diff_against_dev_null() {
        let mut node = Resource::new(
            "MachineSetNodes.omni.sidero.dev",
            "default",
            "m1",
            json!({}),
        );
        node.metadata
            .labels
            .insert("omni.sidero.dev/cluster".into(), "c".into());
        let created = unified(None, Some(&node));
        assert_eq!(
            created,
            "\
--- /dev/null
+++ MachineSetNodes.omni.sidero.dev(default/m1)
@@ -0,0 +1,10 @@
+metadata:
+  namespace: default
+  type: MachineSetNodes.omni.sidero.dev
+  id: m1
+  version: undefined
+  owner: \"\"
+  phase: running
+  labels:
+    omni.sidero.dev/cluster: c
+spec: {}
"
        );
        let deleted = unified(Some(&node), None);
        assert!(deleted.starts_with(
            "--- MachineSetNodes.omni.sidero.dev(default/m1)\n+++ /dev/null\n@@ -1,10 +0,0 @@\n-metadata:\n"
        ));
        assert_eq!(unified(Some(&node), Some(&node)), "");
    }
}
