//! Multi-document YAML manifests for `apply`: split on `---`, parse every
//! document into a resource, resolve its type alias and default namespace.
//! Errors name the document and the line.

use anyhow::{anyhow, bail};
use omni_resources::Resource;

use crate::kinds::resolve_kind;

/// One resource read from a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position in the file (empty documents count).
    pub number: usize,
    /// Line where the document starts.
    pub line: usize,
    pub resource: Resource,
}

impl Document {
    /// `Type(namespace/id)`, as apply prints it.
    pub fn identity(&self) -> String {
        self.resource.key().to_string()
    }
}

/// A document's text, padded with empty lines so that parser positions are
/// lines of the whole file.
struct Chunk {
    line: usize,
    text: String,
}

fn is_separator(line: &str) -> bool {
    let line = line.trim_end_matches(['\n', '\r']);
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

fn split(text: &str) -> Vec<Chunk> {
    let mut chunks = vec![Chunk {
        line: 1,
        text: String::new(),
    }];
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) {
            // Keep what follows `---` on its line, at its column.
            let mut text = String::from("   ");
            text.push_str(&line[3..]);
            chunks.push(Chunk { line: i + 1, text });
        } else if let Some(last) = chunks.last_mut() {
            last.text.push_str(line);
        }
    }
    // Comments or nothing before the first `---` are not a document.
    if chunks.len() > 1 && is_blank(&chunks[0].text) {
        chunks.remove(0);
    }
    chunks
}

/// Parses every document; fails on the first bad one, naming it.
pub fn parse(text: &str) -> anyhow::Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (i, chunk) in split(text).into_iter().enumerate() {
        let number = i + 1;
        // The line of the first content, for errors without a position.
        // Chunks are parsed alone (padding each with the lines before it
        // made big files quadratic); parser lines are shifted back here.
        let offset = chunk.line - 1;
        let line = chunk
            .text
            .lines()
            .enumerate()
            .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map_or(chunk.line, |(n, _)| n + 1 + offset);
        let at = |msg: String| anyhow!("document {number} (line {line}): {msg}");
        let parsed: Option<Resource> = serde_yaml_ng::from_str(&chunk.text).map_err(|e| {
            // The parser leaves out positions at the very start of the input.
            match (e.location(), e.to_string()) {
                (Some(loc), msg) if msg.contains(" at line ") => {
                    let base = &msg[..msg.rfind(" at line ").unwrap_or(msg.len())];
                    anyhow!(
                        "document {number}: {base} at line {} column {}",
                        loc.line() + offset,
                        loc.column()
                    )
                }
                (_, msg) => at(msg),
            }
        })?;
        let Some(mut resource) = parsed else { continue };
        let info = resolve_kind(&resource.metadata.kind).map_err(|e| at(e.to_string()))?;
        resource.metadata.kind = info.name.to_string();
        if resource.metadata.namespace.is_empty() {
            resource.metadata.namespace = info.default_namespace.to_string();
        }
        if resource.metadata.id.is_empty() {
            return Err(at(format!("{}: metadata.id is required", info.name)));
        }
        docs.push(Document {
            number,
            line,
            resource,
        });
    }
    if docs.is_empty() {
        bail!("no resources found");
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
# S3 config first
metadata:
  namespace: default
  type: EtcdBackupS3Configs.omni.sidero.dev
  id: etcd-backup-s3-conf
spec:
  bucket: mybucket
  region: us-east-1
  endpoint: http://127.0.0.1:9000
  accesskeyid: access
  secretaccesskey: secret123
  sessiontoken: \"\"
---

---
metadata:
  type: etcdmanualbackup
  id: talos-default
spec:
  backupat:
    seconds: 1702166400
    nanos: 0
";

    #[test]
    fn documents_with_aliases_and_default_namespaces() {
        let docs = parse(TWO).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].number, docs[0].line), (1, 2));
        assert_eq!(
            docs[0].identity(),
            "EtcdBackupS3Configs.omni.sidero.dev(default/etcd-backup-s3-conf)"
        );
        assert_eq!(docs[0].resource.spec["endpoint"], "http://127.0.0.1:9000");
        let keys: Vec<&String> = docs[0].resource.spec.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "bucket",
                "region",
                "endpoint",
                "accesskeyid",
                "secretaccesskey",
                "sessiontoken"
            ]
        );
        assert_eq!((docs[1].number, docs[1].line), (3, 16));
        assert_eq!(
            docs[1].identity(),
            "EtcdManualBackups.omni.sidero.dev(ephemeral/talos-default)"
        );
        assert_eq!(docs[1].resource.spec["backupat"]["seconds"], 1702166400);
    }

    #[test]
    fn leading_separator_and_crlf() {
        let text =
            "---\r\nmetadata:\r\n  type: cluster\r\n  id: c1\r\nspec:\r\n  talosversion: 1.5.5\r\n";
        let docs = parse(text).unwrap();
        assert_eq!((docs[0].number, docs[0].line), (1, 2));
        assert_eq!(docs[0].resource.spec["talosversion"], "1.5.5");
    }

    #[test]
    fn syntax_error_names_document_and_line() {
        let text = format!("{TWO}---\nmetadata:\n  type: cluster\n  id: [oops\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("document 4: "), "{err}");
        assert!(err.contains("line 26"), "{err}");
    }

    #[test]
    fn unknown_field_names_document_and_line() {
        let text = "metadata:\n  type: cluster\n  id: a\n---\nmetadata:\n  nmespace: default\n  type: cluster\n  id: b\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.starts_with("document 2: metadata: unknown field `nmespace`"),
            "{err}"
        );
        assert!(err.contains("line 6 column 3"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused_everywhere_naming_the_key() {
        let spec = "metadata:\n  type: cluster\n  id: a\nspec:\n  talosversion: 1.5.5\n  talosversion: 1.6.0\n";
        let err = parse(spec).unwrap_err().to_string();
        assert!(err.contains("duplicate key \"talosversion\""), "{err}");
        let nested = "metadata:\n  type: cluster\n  id: a\nspec:\n  backupconfiguration:\n    interval: {seconds: 3600}\n    interval: {seconds: 1}\n";
        let err = parse(nested).unwrap_err().to_string();
        assert!(err.contains("duplicate key \"interval\""), "{err}");
        let label = "metadata:\n  type: cluster\n  id: a\n  labels:\n    k: x\n    k: y\n";
        let err = parse(label).unwrap_err().to_string();
        assert!(err.contains("duplicate key \"k\""), "{err}");
        let meta = "metadata:\n  type: cluster\n  id: a\n  id: b\n";
        let err = parse(meta).unwrap_err().to_string();
        assert!(err.contains("duplicate field `id`"), "{err}");
    }

    #[test]
    fn semantic_errors_name_document_and_line() {
        let err = parse("metadata:\n  type: nosuchthing\n  id: a\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("document 1 (line 1): unknown resource type \"nosuchthing\""),
            "{err}"
        );
        let err = parse("---\n# c\nmetadata:\n  type: cluster\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "document 1 (line 3): Clusters.omni.sidero.dev: metadata.id is required"
        );
        let err = parse("kind: Cluster\nname: x\n").unwrap_err().to_string();
        assert_eq!(
            err,
            "document 1 (line 1): unknown field `kind`, expected `metadata` or `spec`"
        );
        assert_eq!(
            parse("# nothing\n---\n\n").unwrap_err().to_string(),
            "no resources found"
        );
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any text at all: an error or documents, never a panic.
        #[test]
        fn parse_never_panics(text in "\\PC{0,400}") {
            let _ = super::parse(&text);
        }

        /// Text shaped like manifests, with the structure mangled.
        #[test]
        fn parse_never_panics_on_yaml_like_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("metadata:\n".to_string()), Just("  type: cluster\n".to_string()), Just("  id: x\n".to_string()),
                    Just("spec:\n".to_string()), Just("---\n".to_string()), Just("  - a\n".to_string()), Just("[".to_string()),
                    Just("{".to_string()), Just("&a ".to_string()), Just("*a\n".to_string()), Just("!!binary ".to_string()),
                    Just("    nested: {a: [1, {b: 2}]}\n".to_string()), "[a-z: \\n\\t-]{0,20}",
                ],
                0..40,
            )
        ) {
            let _ = super::parse(&parts.concat());
        }
    }
}
