use std::path::{Path, PathBuf};
use std::time::Duration;

use omni_backup::secrecy::SecretString;
use omni_backup::{
    download_to_file, generate_identity, parse_identity, parse_recipient, BackupOptions,
    BackupStore, Identity, MemberEndpoint, Recipient, S3Settings, SourceOptions,
};
use omni_testkit::{EtcdCluster, S3Server};

pub const CLUSTER: &str = "0b7c3c59-6a2e-4c1f-9d0e-2f6a1b2c3d4e";

pub struct Keys {
    pub identity: Identity,
    pub recipient: Recipient,
    #[allow(dead_code)]
    pub secret: SecretString,
}

pub fn keys() -> Keys {
    let (secret, recipient) = generate_identity();
    Keys {
        identity: parse_identity(&secret).expect("identity"),
        recipient: parse_recipient(&recipient).expect("recipient"),
        secret,
    }
}

pub fn members(etcd: &EtcdCluster) -> Vec<MemberEndpoint> {
    etcd.members()
        .iter()
        .map(|m| MemberEndpoint {
            name: m.name().to_string(),
            urls: vec![m.client_url()],
            tls: None,
        })
        .collect()
}

/// Options with short timeouts so that down members are skipped quickly.
pub fn fast_opts() -> BackupOptions {
    BackupOptions {
        source: SourceOptions {
            connect_timeout: Duration::from_secs(1),
            status_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(20),
        },
        ..BackupOptions::default()
    }
}

pub fn s3_settings(s3: &S3Server) -> S3Settings {
    S3Settings {
        bucket: s3.bucket().to_string(),
        region: String::new(),
        endpoint: Some(s3.endpoint()),
        access_key_id: Some(s3.access_key().to_string()),
        secret_access_key: Some(s3.secret_key().to_string()),
        session_token: None,
    }
}

pub async fn etcd_with_keys(members: usize, n: usize) -> EtcdCluster {
    let etcd = EtcdCluster::start(members).await.expect("start etcd");
    let mut c = etcd.client().await.expect("client");
    for i in 0..n {
        c.put(format!("/registry/key-{i:04}"), format!("value-{i}"), None)
            .await
            .expect("put");
    }
    etcd
}

/// Writes about `total` bytes of incompressible values into etcd.
pub async fn fill_random(etcd: &EtcdCluster, total: usize) {
    const VALUE: usize = 512 * 1024;
    let mut c = etcd.client().await.expect("client");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..total.div_ceil(VALUE) {
        let mut v = Vec::with_capacity(VALUE);
        while v.len() < VALUE {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v.extend_from_slice(&state.to_le_bytes());
        }
        c.put(format!("/fill/{i:06}"), v, None)
            .await
            .expect("put fill");
    }
}

/// Downloads `key`, checks the file with etcdutl, restores it into a fresh etcd and
/// returns that etcd.
pub async fn restore(
    store: &BackupStore,
    key: &str,
    identity: &Identity,
    dir: &Path,
) -> EtcdCluster {
    let file = dir.join("restored.db");
    let info = download_to_file(store, key, identity, &file)
        .await
        .expect("download");
    assert_eq!(std::fs::metadata(&file).expect("file").len(), info.bytes);
    let bins = omni_testkit::etcd_bins().expect("bins");
    let status = bins
        .snapshot_status(&file)
        .expect("etcdutl snapshot status accepts the download");
    assert!(status.contains("\"hash\""), "{status}");
    EtcdCluster::restore_single(&file)
        .await
        .expect("etcdutl restore + start")
}

pub async fn assert_keys(etcd: &EtcdCluster, n: usize) {
    for i in [0, n / 2, n - 1] {
        let got = etcd
            .get(format!("/registry/key-{i:04}"))
            .await
            .expect("get");
        assert_eq!(got, Some(format!("value-{i}").into_bytes()), "key {i}");
    }
}

/// All regular files below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Polls a cheap synchronous condition every 2 ms (for catching a pipeline mid-way).
pub async fn poll_fast(timeout: std::time::Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    false
}
