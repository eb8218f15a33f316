//! The CLI habits users bring from kubectl: failures are never silent,
//! delete waits, apply takes directories, contexts, completion, 429s.

mod common;

use std::process::{Command, Stdio};

use common::*;

/// A 10 MiB apply to the real server: it answers 413 once the body passes
/// its 1 MiB limit and closes the connection while omnictl is still
/// uploading, so omnictl's error chain often holds a broken pipe. That used
/// to exit 0 without a word in about half the tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_cut_off_mid_upload_is_an_error_not_a_silent_exit() {
    let omni = Omni::start(&["--state", "memory"]).await;
    let filler = "x".repeat(10 << 20);
    let big = omni.write_file(
        "big.yaml",
        &format!("metadata:\n  type: cluster\n  id: c1\nspec:\n  installimage: \"{filler}\"\n"),
    );
    for attempt in 0..10 {
        let out = omni.ctl(&["apply", "-f", path_str(&big)]);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "attempt {attempt}: exit 0, stderr {err:?}"
        );
        assert!(err.starts_with("error: "), "attempt {attempt}: {err:?}");
        assert!(err.contains("big.yaml"), "attempt {attempt}: {err:?}");
    }
    assert!(!exists(&omni, "cluster", "c1"));
}

#[test]
fn closed_stdout_still_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let many: String = (0..3000)
        .map(|i| format!("metadata:\n  type: cluster\n  id: c{i}\nspec: {{}}\n---\n"))
        .collect();
    let path = dir.path().join("many.yaml");
    std::fs::write(&path, many).unwrap();
    // `omnictl ... | head -0`: the reader is gone before the output (more
    // than a pipe buffer) is written.
    let mut child = Command::new(omnictl_bin())
        .args(["apply", "--dry-run", "-f", path_str(&path)])
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

fn exists(omni: &Omni, kind: &str, id: &str) -> bool {
    let out = omni.ctl(&["get", kind, id, "-o", "json"]);
    if out.status.success() {
        return true;
    }
    assert!(stderr(&out).contains("doesn't exist"), "{}", stderr(&out));
    false
}

fn finalizers(omni: &Omni, kind: &str, id: &str) -> Vec<String> {
    let text = omni.ctl_ok(&["get", kind, id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["metadata"]["finalizers"].clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_teardown_and_takes_ids_selectors_and_all() {
    let omni = Omni::start(&["--state", "memory"]).await;
    let machines: Vec<(String, String)> = ["m1", "m2", "m3"]
        .iter()
        .map(|m| (m.to_string(), "http://127.0.0.1:1".to_string()))
        .collect();
    let dir = omni.dir.path().join("manifests");
    std::fs::create_dir_all(dir.join("nodes")).unwrap();
    std::fs::write(
        dir.join("nodes/c1.yaml"),
        machines_yaml("c1", &machines, true),
    )
    .unwrap();
    std::fs::write(
        dir.join("clusters.yml"),
        "metadata:\n  type: cluster\n  id: c1\nspec: {}\n---\nmetadata:\n  type: cluster\n  id: c2\nspec: {}\n",
    )
    .unwrap();
    let extra = omni.write_file(
        "c3.yaml",
        "metadata:\n  type: cluster\n  id: c3\nspec: {}\n",
    );
    // A directory (recursive, *.yml too) and a file, in one apply.
    let out = omni.ctl_ok(&["apply", "-f", path_str(&dir), "-f", path_str(&extra)]);
    assert_eq!(out.lines().count(), 9, "{out}");
    for (kind, id) in [
        ("cluster", "c1"),
        ("cluster", "c3"),
        ("machinesetnode", "m3"),
    ] {
        assert!(exists(&omni, kind, id), "{kind} {id} not applied: {out}");
    }

    // An unknown id among known ones deletes nothing.
    let out = omni.ctl(&["delete", "cluster", "c2", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    assert!(exists(&omni, "cluster", "c2"));

    // By selector.
    let out = omni.ctl_ok(&[
        "delete",
        "machinesetnode",
        "-l",
        "omni.sidero.dev/cluster=c1",
    ]);
    assert_eq!(out.matches("destroyed").count(), 3, "{out}");
    assert!(!exists(&omni, "machinesetnode", "m2"));

    // The cluster controller holds c1 until its machines are torn down;
    // delete returns only once c1 is really gone.
    eventually("c1's finalizer", || {
        finalizers(&omni, "cluster", "c1")
            .iter()
            .any(|f| f == "ClusterController")
            .then_some(())
    })
    .await;
    let out = omni.ctl_ok(&["delete", "cluster", "c1", "c2"]);
    assert!(
        out.contains("Clusters.omni.sidero.dev(default/c1) destroyed"),
        "{out}"
    );
    assert!(
        !exists(&omni, "cluster", "c1"),
        "delete returned before c1 was gone"
    );
    assert!(!exists(&omni, "cluster", "c2"));

    // Everything of a type, without waiting.
    let out = omni.ctl_ok(&["delete", "machine", "--all", "--wait=false"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    eventually("every machine gone", || {
        omni.ctl_ok(&["get", "machine", "-o", "json"])
            .trim()
            .is_empty()
            .then_some(())
    })
    .await;
    let out = omni.ctl(&["delete", "cluster"]);
    assert!(
        !out.status.success(),
        "delete without ids, selector or --all"
    );
}

/// 1,000 clusters with one Machine and one MachineSetNode each, in one
/// file, against a server on its default rate limit (50/s, burst 200): these
/// 3,000 documents used to stop at document 265 with 429. One file goes in
/// batches of a few requests, and 429s are retried after `Retry-After`.
/// Memory state: what is measured is the API path, not redb's fsyncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_documents_apply_on_default_rate_limits() {
    const CLUSTERS: usize = 1000;
    let omni = Omni::start(&["--state", "memory"]).await;
    let mut yaml = String::new();
    for i in 0..CLUSTERS {
        let machine = (format!("m-{i}"), "http://127.0.0.1:1".to_string());
        yaml.push_str(&machines_yaml(&format!("c-{i}"), &[machine], true));
        yaml.push_str(&format!(
            "metadata:\n  type: cluster\n  id: c-{i}\nspec: {{}}\n---\n"
        ));
    }
    let path = omni.write_file("fleet.yaml", &yaml);
    let started = std::time::Instant::now();
    let out = omni.ctl(&["apply", "-f", path_str(&path)]);
    eprintln!(
        "applied {} documents in {:?}",
        3 * CLUSTERS,
        started.elapsed()
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3 * CLUSTERS, "{}", stderr(&out));
    assert_eq!(text.matches(" created").count(), 3 * CLUSTERS);
    assert!(text.ends_with(&format!(
        "Clusters.omni.sidero.dev(default/c-{}) created\n",
        CLUSTERS - 1
    )));
    let listed = omni.ctl_ok(&["get", "machinesetnode", "-o", "json"]);
    assert_eq!(
        listed
            .matches("\"MachineSetNodes.omni.sidero.dev\"")
            .count(),
        CLUSTERS
    );
    // Applied again: every document unchanged, still within the limit.
    let again = omni.ctl_ok(&["apply", "-f", path_str(&path)]);
    assert_eq!(again.matches(" unchanged").count(), 3 * CLUSTERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_checked_whole_before_any_document_is_written() {
    let omni = Omni::start(&["--state", "memory"]).await;
    // Both parse; only the server knows the second spec is wrong.
    let out = omni.apply_yaml(
        "metadata:\n  type: cluster\n  id: first\nspec: {}\n---\nmetadata:\n  type: cluster\n  id: second\nspec:\n  colour: red\n",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Clusters.omni.sidero.dev(default/second) (document 2 of")
            && err.contains("colour"),
        "{err}"
    );
    assert!(
        !exists(&omni, "cluster", "first"),
        "a rejected file was half applied"
    );
}
