//! Bad input through the real CLI: a clear message on stderr naming the
//! problem, a non-zero exit, and no change on the server.

mod common;

use common::*;

const GOOD: &str = "metadata:\n  namespace: default\n  type: Clusters.omni.sidero.dev\n  id: c1\nspec:\n  talosversion: 1.5.5\n";

fn all_clusters(omni: &Omni) -> String {
    omni.ctl_ok(&["get", "cluster", "-o", "json"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_named_error_and_changes_nothing() {
    let omni = Omni::start(&["--state", "memory"]).await;
    assert!(omni.apply_yaml(GOOD).status.success());
    let before = all_clusters(&omni);
    let reader = omni
        .ctl_ok(&["token", "create", "--role", "reader"])
        .trim()
        .to_string();

    let cases: &[(&str, &str, &str)] = &[
        ("malformed yaml", "metadata: [unclosed\n", "document 1"),
        ("unknown type", "metadata:\n  type: Bogus\n  id: x\nspec: {}\n", "unknown"),
        ("unknown field", "metadata:\n  type: cluster\n  id: c1\nspec:\n  talosversion: \"2\"\n  colour: red\n", "colour"),
        ("wrong type", "metadata:\n  type: cluster\n  id: c1\nspec:\n  features: yes-please\n", "spec.features"),
        ("missing id", "metadata:\n  type: cluster\nspec: {}\n", "metadata.id"),
        ("stale version", "metadata:\n  type: cluster\n  id: c1\n  version: 42\nspec:\n  talosversion: \"9\"\n", "version conflict"),
        ("id with a path", "metadata:\n  type: cluster\n  id: ../../etc\nspec: {}\n", "metadata.id"),
        ("negative interval", "metadata:\n  type: cluster\n  id: c1\nspec:\n  backupconfiguration:\n    interval:\n      seconds: -5\n", "must not be negative"),
        ("absurd interval", "metadata:\n  type: cluster\n  id: c1\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 99999999\n", "backup interval must be less than 24h0m0s"),
        ("zero interval", "metadata:\n  type: cluster\n  id: c1\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 0\n", "backup interval must be greater than 1h0m0s, actual 0s"),
        ("duplicate spec key", "metadata:\n  type: cluster\n  id: c1\nspec:\n  talosversion: 1.5.5\n  talosversion: 1.6.0\n", "duplicate key \"talosversion\""),
        ("backup far in the future", "metadata:\n  type: etcdmanualbackup\n  id: c1\nspec:\n  backupat:\n    seconds: 99999999999\n", "1 minute in the future"),
        ("second doc bad, first not applied", "metadata:\n  type: cluster\n  id: c2\nspec: {}\n---\nmetadata: {type: cluster, id: c3}\nspec: [\n", "document 2"),
    ];
    for (name, yaml, needle) in cases {
        let out = omni.apply_yaml(yaml);
        assert!(!out.status.success(), "{name}: accepted");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    assert_eq!(
        all_clusters(&omni),
        before,
        "a rejected apply changed the state"
    );

    // Auth: no token, a bad token, a reader writing.
    let path = omni.write_file("good.yaml", &GOOD.replace("1.5.5", "1.6.0"));
    for (token, needle) in [
        ("", "Authorization"),
        ("omni-0123456789ab-ffff", "invalid or revoked token"),
    ] {
        let out = omni.ctl_as(token, &["apply", "-f", path_str(&path)]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
    let out = omni.ctl_as(&reader, &["apply", "-f", path_str(&path)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("requires the operator role"),
        "{}",
        stderr(&out)
    );
    assert_eq!(all_clusters(&omni), before);

    // Reads: unknown type, bad selector, missing resource.
    for (args, needle) in [
        (vec!["get", "nosuchtype"], "nosuchtype"),
        (
            vec!["get", "cluster", "--selector", "a=b,,"],
            "invalid label selector",
        ),
        (vec!["get", "cluster", "nope"], "doesn't exist"),
        // Listing backups: a typo must not look like "no backups".
        (
            vec![
                "get",
                "etcdbackup",
                "--selector",
                "omni.sidero.dev/cluster=",
            ],
            "empty value for \"omni.sidero.dev/cluster\" is not supported",
        ),
        (
            vec![
                "get",
                "etcdbackup",
                "--selector",
                "omni.sidero.dev/cluster=c1,foo=bar",
            ],
            "unsupported label query term \"foo=bar\"",
        ),
        (
            vec![
                "get",
                "etcdbackup",
                "--selector",
                "omni.sidero.dev/cluster=nosuch",
            ],
            "cluster \"nosuch\" does not exist",
        ),
    ] {
        let out = omni.ctl(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }

    // export-key: an unknown cluster is named as such, not as a missing
    // internal resource; an existing file is never overwritten silently.
    let key = omni.write_file("key.txt", "precious\n");
    let out = omni.ctl(&[
        "etcd-backup",
        "export-key",
        "--cluster",
        "nosuch",
        "-o",
        path_str(&omni.data_dir().join("k2.txt")),
    ]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).trim(), "error: cluster nosuch does not exist");
    let out = omni.ctl(&[
        "etcd-backup",
        "export-key",
        "--cluster",
        "c1",
        "-o",
        path_str(&key),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exists; pass --force to overwrite it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "precious\n");

    // restore: which backup must be said; a failed one (unknown backup)
    // leaves nothing, not even the parent directories it made.
    let etcdutl = omni_testkit::etcd_bins().unwrap().etcdutl;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("srv/etcd/m0");
    let restore = |which: &[&str]| {
        let mut args = vec![
            "etcd-backup",
            "restore",
            "--cluster",
            "c1",
            "--data-dir",
            path_str(&data),
            "--name",
            "m0",
            "--initial-cluster",
            "m0=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--etcdutl",
            path_str(&etcdutl),
        ];
        args.extend_from_slice(which);
        omni.ctl(&args)
    };
    let out = restore(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--snapshot ID (the same on every member), --latest"),
        "{}",
        stderr(&out)
    );
    for which in [&["--snapshot", "c1-1700000000"][..], &["--latest"][..]] {
        let out = restore(which);
        assert!(!out.status.success(), "{which:?}");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert_eq!(
            std::fs::read_dir(work.path()).unwrap().count(),
            0,
            "{which:?} left {:?}",
            stderr(&out)
        );
    }

    // SIGTERM drains and exits cleanly.
    let mut omni = omni;
    let status = omni.stop();
    assert!(status.success(), "omni exited with {status} on SIGTERM");
}
