//! Tests of the test kit itself, against the real binaries.

use std::time::Duration;

use omni_testkit::{etcd_bins, free_port, wait_until, Error, EtcdCluster, S3Server};

#[tokio::test]
async fn single_member_put_get_restart() {
    let mut etcd = EtcdCluster::start(1).await.expect("start etcd");
    etcd.put("k", "v").await.expect("put");
    assert_eq!(
        etcd.get("k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );

    etcd.stop_member(0).expect("stop");
    assert!(!etcd.member(0).is_running());
    assert!(
        etcd.get("k").await.is_err(),
        "stopped member must not answer"
    );
    etcd.start_member(0).await.expect("restart");
    etcd.wait_healthy().await.expect("healthy");
    assert_eq!(
        etcd.get("k").await.expect("get after restart").as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test]
async fn three_members_replicate_and_survive_one_down() {
    let mut etcd = EtcdCluster::start(3).await.expect("start etcd");
    let urls = etcd.client_urls();
    assert_eq!(urls.len(), 3);
    assert!(urls.iter().all(|u| u.starts_with("http://127.0.0.1:")));
    etcd.put("a", "1").await.expect("put");
    etcd.stop_member(0).expect("stop m0");
    assert_eq!(etcd.running_client_urls().len(), 2);
    etcd.put("b", "2").await.expect("put with 2 of 3");
    etcd.start_member(0).await.expect("restart m0");
    etcd.wait_healthy().await.expect("healthy");
    // Read from the restarted member alone: it has caught up.
    let mut c = etcd_client::Client::connect([etcd.member(0).client_url()], None)
        .await
        .expect("connect m0");
    let check = || {
        let mut c = c.clone();
        async move {
            c.get("b", None)
                .await
                .map(|r| r.kvs().first().map(|kv| kv.value().to_vec()) == Some(b"2".to_vec()))
                .unwrap_or(false)
        }
    };
    wait_until(Duration::from_secs(10), check)
        .await
        .expect("m0 caught up");
    assert_eq!(c.get("a", None).await.expect("get a").kvs().len(), 1);
}

#[tokio::test]
async fn s3_server_serves_bucket_and_restarts() {
    let mut s3 = S3Server::start().await.expect("start s3s-fs");
    assert!(s3.bucket_dir().is_dir());
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(s3.region(), "us-east-1");
    let addr = ("127.0.0.1", s3.port());
    s3.stop();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped server must refuse"
    );
    s3.restart().await.expect("restart");
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    assert!(s3.bucket_dir().is_dir(), "data survives a restart");
}

#[tokio::test]
async fn helpers() {
    let bins = etcd_bins().expect("bins");
    assert!(bins.etcd.is_file() && bins.etcdctl.is_file() && bins.etcdutl.is_file());
    assert_ne!(free_port().expect("port"), 0);
    let mut n = 0;
    wait_until(Duration::from_secs(2), || {
        n += 1;
        let done = n >= 3;
        async move { done }
    })
    .await
    .expect("eventually true");
    let err = wait_until(Duration::from_millis(100), || async { false }).await;
    assert!(matches!(err, Err(Error::Timeout(_))));
}

#[tokio::test]
async fn snapshot_save_and_restore_roundtrip() {
    let etcd = EtcdCluster::start(1).await.expect("start etcd");
    etcd.put("restored", "yes").await.expect("put");
    let dir = tempfile::tempdir().expect("tmp");
    let snap = dir.path().join("s.db");
    etcd.bins()
        .snapshot_save(&etcd.member(0).client_url(), &snap)
        .expect("save");
    etcd.bins().snapshot_status(&snap).expect("status");
    let restored = EtcdCluster::restore_single(&snap).await.expect("restore");
    assert_eq!(
        restored.get("restored").await.expect("get").as_deref(),
        Some(&b"yes"[..])
    );
}

#[tokio::test]
async fn tls_cluster_requires_client_certificate() {
    let etcd = EtcdCluster::start_tls(1).await.expect("start tls etcd");
    assert!(etcd
        .member(0)
        .client_url()
        .starts_with("https://127.0.0.1:"));
    let tls = etcd.tls().expect("tls material").clone();
    etcd.put("secure", "yes").await.expect("put over tls");
    assert_eq!(
        etcd.get("secure").await.expect("get").as_deref(),
        Some(&b"yes"[..])
    );

    // Trusting the CA but presenting no client certificate is refused.
    let opts = etcd_client::ConnectOptions::new().with_tls(
        etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem)),
    );
    let res = tokio::time::timeout(Duration::from_secs(5), async {
        let mut c = etcd_client::Client::connect([etcd.member(0).client_url()], Some(opts)).await?;
        c.get("secure", None).await
    })
    .await;
    assert!(
        !matches!(res, Ok(Ok(_))),
        "a client without certificate must not read"
    );
}
