//! YAML output: one document per resource, `metadata` then `spec`,
//! separated by `---`.

use std::io::{self, Write};

use omni_resources::Resource;
use serde_json::Value;

use super::{Change, Printer};

/// One resource as a YAML document. `created`/`updated` are left out, as
/// in the documented output; `-o json` keeps everything.
pub fn resource_yaml(r: &Resource) -> String {
    let mut value = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("created");
        meta.shift_remove("updated");
    }
    crate::yaml::to_string(&value)
}

#[derive(Debug, Default)]
pub struct YamlPrinter {
    printed: bool,
}

impl YamlPrinter {
    fn document(
        &mut self,
        out: &mut dyn Write,
        comment: Option<&str>,
        r: &Resource,
    ) -> io::Result<()> {
        if self.printed {
            out.write_all(b"---\n")?;
        }
        self.printed = true;
        if let Some(c) = comment {
            writeln!(out, "# {c}")?;
        }
        out.write_all(resource_yaml(r).as_bytes())
    }
}

impl Printer for YamlPrinter {
    fn list(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        items.iter().try_for_each(|r| self.document(out, None, r))
    }

    fn watch_start(&mut self, out: &mut dyn Write, items: &[Resource]) -> io::Result<()> {
        self.list(out, items)
    }

    /// Changes carry a `# created` / `# updated` / `# destroyed` comment.
    fn watch_event(&mut self, out: &mut dyn Write, change: Change, r: &Resource) -> io::Result<()> {
        self.document(out, Some(change.as_str()), r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(id: &str) -> Resource {
        let mut r = Resource::new(
            "EtcdBackupStatuses.omni.sidero.dev",
            "ephemeral",
            id,
            json!({
                "status": 1,
                "error": "",
                "lastbackuptime": {"seconds": 1702166400, "nanos": 985220192},
                "lastbackupattempt": {"seconds": 1702166400, "nanos": 985220192}
            }),
        );
        r.metadata.version = 1;
        r.metadata.owner = "EtcdBackupController".into();
        r.metadata.created = Some(omni_resources::Timestamp::from_unix(1));
        r.metadata.updated = Some(omni_resources::Timestamp::from_unix(2));
        r
    }

    const SEED: &str = "\
metadata:
  namespace: ephemeral
  type: EtcdBackupStatuses.omni.sidero.dev
  id: <cluster-name>
  version: 1
  owner: EtcdBackupController
  phase: running
spec:
  status: 1
  error: \"\"
  lastbackuptime:
    seconds: 1702166400
    nanos: 985220192
  lastbackupattempt:
    seconds: 1702166400
    nanos: 985220192
";

    #[test]
    fn status_matches_the_seed() {
        assert_eq!(resource_yaml(&status("<cluster-name>")), SEED);
    }

    #[test]
    fn typed_spec_keeps_field_order() {
        use omni_resources::specs::backup::EtcdBackupStatusSpec;
        let typed: EtcdBackupStatusSpec = status("x").spec_as().unwrap();
        let mut r = Resource::from_spec(
            "EtcdBackupStatuses.omni.sidero.dev",
            "ephemeral",
            "<cluster-name>",
            &typed,
        );
        r.metadata.version = 1;
        r.metadata.owner = "EtcdBackupController".into();
        assert_eq!(resource_yaml(&r), SEED);
    }

    #[test]
    fn documents_are_separated() {
        let mut out = Vec::new();
        let mut p = YamlPrinter::default();
        p.list(&mut out, &[status("a"), status("b")]).unwrap();
        p.watch_event(&mut out, Change::Destroyed, &status("a"))
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        let docs: Vec<&str> = text.split("---\n").collect();
        assert_eq!(docs.len(), 3);
        assert!(docs[1].starts_with("metadata:\n  namespace: ephemeral\n"));
        assert!(docs[2].starts_with("# destroyed\nmetadata:\n"));
        // Every document parses back to its resource.
        let back: Resource = serde_yaml_ng::from_str(docs[0]).unwrap();
        assert_eq!(back.spec, status("a").spec);
    }
}
