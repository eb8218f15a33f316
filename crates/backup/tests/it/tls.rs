use omni_backup::{take_backup_with, BackupStore, Error, MemberEndpoint, TlsMaterial};
use omni_testkit::EtcdCluster;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_over_tls_with_client_certificate() {
    let etcd = EtcdCluster::start_tls(1).await.expect("tls etcd");
    for i in 0..10 {
        etcd.put(format!("/registry/key-{i:04}"), format!("value-{i}"))
            .await
            .expect("put");
    }
    let pem = etcd.tls().expect("tls").clone();
    let member = |tls: TlsMaterial| MemberEndpoint {
        name: "m0".into(),
        urls: vec![etcd.member(0).client_url()],
        tls: Some(tls),
    };
    let good = TlsMaterial {
        ca_pem: pem.ca_pem.clone(),
        cert_pem: Some(pem.client_cert_pem.clone()),
        key_pem: Some(pem.client_key_pem.clone()),
    };
    assert!(
        !format!("{good:?}").contains("PRIVATE KEY"),
        "Debug must not show the key"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let store = BackupStore::local(dir.path().join("store")).expect("store");
    let k = keys();

    // Without a client certificate etcd refuses us, and nothing is stored.
    let no_cert = TlsMaterial {
        cert_pem: None,
        key_pem: None,
        ..good.clone()
    };
    let err = take_backup_with(
        &fast_opts(),
        &[member(no_cert)],
        &store,
        CLUSTER,
        &k.recipient,
        1,
    )
    .await
    .expect_err("no client cert");
    assert!(matches!(err, Error::NoSnapshot { .. }), "{err:?}");
    assert!(!err.to_string().contains("PRIVATE KEY"));
    assert!(store.list(CLUSTER).await.expect("list").is_empty());

    let out = take_backup_with(
        &fast_opts(),
        &[member(good)],
        &store,
        CLUSTER,
        &k.recipient,
        2,
    )
    .await
    .expect("backup over tls");
    assert_eq!(out.member, "m0");
    let restored = restore(&store, &out.key, &k.identity, dir.path()).await;
    assert_keys(&restored, 10).await;
}
