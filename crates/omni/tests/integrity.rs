//! Tampering with stored objects: a truncated object and an object swapped
//! onto another backup's key both fail to download with an error naming the
//! backup, and nothing is written.

mod common;

use std::path::PathBuf;

use common::*;
use omni_testkit::EtcdCluster;

fn ids(omni: &Omni) -> Vec<String> {
    let out = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=c",
        "-o",
        "json",
    ]);
    serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(|v| v.unwrap()["metadata"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Object files, newest first (keys invert the time).
fn objects(omni: &Omni) -> Vec<PathBuf> {
    let root = omni.data_dir().join("backups");
    let dir = std::fs::read_dir(&root)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    files.sort();
    files
}

fn download(omni: &Omni, id: &str, out: &std::path::Path) -> std::process::Output {
    omni.ctl(&[
        "etcd-backup",
        "download",
        "--cluster",
        "c",
        "--snapshot",
        id,
        "-o",
        path_str(out),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_swapped_objects_are_caught() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let omni = Omni::start(&["--state", "memory", "--etcd-backup-tick", "1s"]).await;
    register_members(&omni, "c", &etcd);
    create_cluster(&omni, "c");
    for n in 1..=3 {
        let req = format!(
            "metadata:\n  type: etcdmanualbackup\n  id: c\nspec:\n  backupat:\n    seconds: {}\n",
            now()
        );
        assert!(omni.apply_yaml(&req).status.success());
        eventually(&format!("{n} backups"), || {
            (ids(&omni).len() == n).then_some(())
        })
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    let ids = ids(&omni);
    let files = objects(&omni);
    assert_eq!(files.len(), 3);
    let out = omni.dir.path().join("out.db");
    for id in &ids {
        assert!(
            download(&omni, id, &out).status.success(),
            "{id} does not download before tampering"
        );
    }
    std::fs::remove_file(&out).unwrap();

    // Truncated: the newest object loses its second half.
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    let o = download(&omni, &ids[0], &out);
    assert!(!o.status.success(), "a truncated object downloaded");
    let err = stderr(&o);
    assert!(
        err.contains(&ids[0]) && err.contains("integrity check failed"),
        "{err}"
    );
    assert!(!out.exists());

    // Swapped: the oldest object copied over the middle one's key. It is a
    // perfectly valid backup, just not this one.
    std::fs::copy(&files[2], &files[1]).unwrap();
    let o = download(&omni, &ids[1], &out);
    assert!(
        !o.status.success(),
        "a swapped object downloaded as the wrong backup"
    );
    let err = stderr(&o);
    assert!(err.contains(&ids[1]) && err.contains("swapped"), "{err}");
    assert!(!out.exists());
    // `verify` says the same without downloading.
    let v = omni.ctl(&[
        "etcd-backup",
        "verify",
        "--cluster",
        "c",
        "--snapshot",
        &ids[1],
    ]);
    assert!(!v.status.success());
    assert!(stderr(&v).contains("swapped"), "{}", stderr(&v));
    let v = omni.ctl_ok(&[
        "etcd-backup",
        "verify",
        "--cluster",
        "c",
        "--snapshot",
        &ids[2],
    ]);
    assert!(v.contains("is intact"), "{v}");
    // The untouched one still downloads.
    assert!(download(&omni, &ids[2], &out).status.success());
}

/// `?check=` of the snapshot endpoint: `client` (omnictl's way) and
/// `server` send the same verified bytes; anything else is a 400 that names
/// the parameter and its value, and sends no snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_endpoint_names_a_bad_check_parameter() {
    let etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let omni = Omni::start(&["--state", "memory", "--etcd-backup-tick", "1s"]).await;
    register_members(&omni, "c", &etcd);
    create_cluster(&omni, "c");
    let req = format!(
        "metadata:\n  type: etcdmanualbackup\n  id: c\nspec:\n  backupat:\n    seconds: {}\n",
        now()
    );
    assert!(omni.apply_yaml(&req).status.success());
    let id = eventually("a backup", || ids(&omni).into_iter().next()).await;

    let http = reqwest::Client::new();
    let get = |query: &str| {
        http.get(format!(
            "{}/api/v1/etcd-backups/{id}/snapshot{query}",
            omni.endpoint()
        ))
        .bearer_auth(&omni.token)
        .send()
    };
    let mut bodies = Vec::new();
    for query in ["", "?check=server", "?check=client"] {
        let r = get(query).await.unwrap();
        assert_eq!(r.status(), 200, "{query}");
        let body = r.bytes().await.unwrap();
        let mut v = omni_backup::digest::TrailerVerifier::new();
        v.update(&body);
        assert!(v.finish().is_ok(), "{query}: the trailer does not match");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));

    for bad in ["bogus", "CLIENT", ""] {
        let r = get(&format!("?check={bad}")).await.unwrap();
        assert_eq!(r.status(), 400, "check={bad}");
        let answer: serde_json::Value = r.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(answer["error"]["code"], "invalid", "check={bad}: {answer}");
        assert!(
            message.starts_with("query parameter check: ") && message.contains(&format!("{bad:?}")),
            "check={bad}: {answer}"
        );
    }
}
