//! `omnictl apply -f FILE|DIR...`: parse every document of every file
//! first (a bad one anywhere applies nothing), then apply each file in one
//! batch request (the server checks a whole batch before writing any of
//! it), file after file, stopping at the first error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use omni_client::ClientError;
use omni_resources::Resource;

use crate::args::ApplyArgs;
use crate::manifest::{self, Document};

use super::Context;

/// Extensions picked up inside a directory.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The files named, directories expanded (recursively, sorted by path).
fn expand(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in args {
        if path.as_os_str() != "-" && path.is_dir() {
            let before = files.len();
            walk(path, &mut files)?;
            if files.len() == before {
                bail!(
                    "{}: no *.yaml, *.yml or *.json file in the directory",
                    path.display()
                );
            }
        } else {
            files.push(path.clone());
        }
    }
    if files.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        bail!("standard input ('-') can be read only once");
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot read directory {}", dir.display()))?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        return Ok((text, "<stdin>".into()));
    }
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
    Ok((text, name))
}

pub async fn run(ctx: &Context, args: &ApplyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut parsed: Vec<(String, Vec<Document>)> = Vec::new();
    for path in expand(&args.files)? {
        let (text, name) = read_input(&path)?;
        let docs = manifest::parse(&text).with_context(|| format!("invalid manifest {name}"))?;
        parsed.push((name, docs));
    }
    if args.dry_run {
        for doc in parsed.iter().flat_map(|(_, docs)| docs) {
            writeln!(out, "{} valid (dry run)", doc.identity())?;
        }
        return Ok(());
    }
    let client = ctx.client()?;
    for (name, docs) in &parsed {
        for chunk in chunks(docs) {
            let resources: Vec<Resource> = chunk.iter().map(|d| d.resource.clone()).collect();
            let applied = client
                .apply_batch(&resources)
                .await
                .map_err(|e| name_document(e, chunk, name))?;
            for (doc, applied) in chunk.iter().zip(&applied) {
                writeln!(out, "{} {}", doc.identity(), applied.result)?;
            }
            out.flush()?;
        }
    }
    Ok(())
}

/// Documents per request: a small file is one request; a big one is split
/// well below the server's body limit (1 MiB), and into requests short
/// enough to finish within the client's request timeout on a busy server.
fn chunks(docs: &[Document]) -> Vec<&[Document]> {
    const MAX_BYTES: usize = 512 * 1024;
    const MAX_ITEMS: usize = 200;
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, doc) in docs.iter().enumerate() {
        let size = serde_json::to_vec(&doc.resource).map_or(0, |v| v.len());
        if i > start && (bytes + size > MAX_BYTES || i - start >= MAX_ITEMS) {
            out.push(&docs[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < docs.len() {
        out.push(&docs[start..]);
    }
    out
}

/// The server names a bad item `items[i]`; say which document of which
/// file it is instead.
fn name_document(e: ClientError, chunk: &[Document], file: &str) -> anyhow::Error {
    let ClientError::Api { code, message, .. } = &e else {
        return anyhow::Error::new(e).context(format!("cannot apply {file}"));
    };
    let item = message
        .strip_prefix("items[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, rest)| Some((chunk.get(i.parse::<usize>().ok()?)?, rest)));
    match item {
        Some((doc, rest)) => {
            // Drop the server's own "(key; …)" note: the document is named here.
            let rest = rest.trim_start_matches(':').trim_start();
            let rest = match rest.strip_prefix('(').and_then(|r| r.split_once("): ")) {
                Some((_, after)) => after,
                None => rest,
            };
            anyhow!("{rest} ({code})").context(format!(
                "cannot apply {} (document {} of {file})",
                doc.identity(),
                doc.number
            ))
        }
        None => anyhow::Error::new(e).context(format!("cannot apply {file}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_recursively_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/nested")).unwrap();
        for f in [
            "b/2.yml",
            "b/nested/1.json",
            "a.yaml",
            "b/notes.txt",
            "b/1.yaml",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        let single = d.join("single.yaml");
        let files = expand(&[d.join("b"), single.clone(), d.join("a.yaml")]).unwrap();
        let rel: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "b/1.yaml",
                "b/2.yml",
                "b/nested/1.json",
                "single.yaml",
                "a.yaml"
            ]
        );

        std::fs::create_dir(d.join("empty")).unwrap();
        let err = expand(&[d.join("empty")]).unwrap_err().to_string();
        assert!(err.contains("no *.yaml"), "{err}");
        assert!(expand(&["-".into(), "-".into()]).is_err());
    }

    #[test]
    fn chunks_split_big_files_and_keep_order() {
        let text: String = (0..2500)
            .map(|i| format!("metadata:\n  type: cluster\n  id: c{i}\nspec: {{}}\n---\n"))
            .collect();
        let docs = manifest::parse(&text).unwrap();
        let parts = chunks(&docs);
        assert_eq!(parts.len(), 13);
        assert_eq!(parts.iter().map(|c| c.len()).sum::<usize>(), 2500);
        assert_eq!(parts[1][0].resource.metadata.id, "c200");
        assert_eq!(chunks(&docs[..1]).len(), 1);
    }

    #[test]
    fn server_item_index_becomes_the_document() {
        let docs = manifest::parse("metadata: {type: cluster, id: a}\nspec: {}\n---\nmetadata: {type: cluster, id: b}\nspec: {}\n").unwrap();
        let e = ClientError::Api {
            status: 400,
            code: "invalid".into(),
            message: "items[1]: spec.colour: unknown field".into(),
        };
        let msg = format!("{:#}", name_document(e, &docs, "x.yaml"));
        assert_eq!(
            msg,
            "cannot apply Clusters.omni.sidero.dev(default/b) (document 2 of x.yaml): spec.colour: unknown field (invalid)"
        );
        let e = ClientError::Api {
            status: 409,
            code: "conflict".into(),
            message: "items[0] (Clusters.omni.sidero.dev(default/a); the 0 items before it were applied): version conflict".into(),
        };
        let msg = format!("{:#}", name_document(e, &docs, "x.yaml"));
        assert!(
            msg.ends_with("(document 1 of x.yaml): version conflict (conflict)"),
            "{msg}"
        );
    }
}
