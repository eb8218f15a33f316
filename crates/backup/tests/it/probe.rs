//! The member probe against real etcd: through the JSON gateway, over TLS
//! with a client certificate, and over gRPC when the client URL has no
//! gateway.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use omni_backup::probe::{grpc_status, member_status};
use omni_backup::{MemberEndpoint, TlsMaterial};
use omni_testkit::EtcdCluster;

const TIMEOUT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_says_what_grpc_says_over_tls() {
    let etcd = EtcdCluster::start_tls(1).await.expect("tls etcd");
    let pem = etcd.tls().expect("tls").clone();
    let good = TlsMaterial {
        ca_pem: pem.ca_pem.clone(),
        cert_pem: Some(pem.client_cert_pem.clone()),
        key_pem: Some(pem.client_key_pem.clone()),
    };
    let member = |tls: TlsMaterial| MemberEndpoint {
        name: "m0".into(),
        urls: vec![etcd.member(0).client_url()],
        tls: Some(tls),
    };
    let http = member_status(&member(good.clone()), TIMEOUT)
        .await
        .expect("gateway status");
    let grpc = grpc_status(&member(good.clone()), TIMEOUT)
        .await
        .expect("grpc status");
    assert!(http.member_id != 0 && http.is_leader(), "{http:?}");
    assert!(
        http.version.starts_with("3.") && http.db_size > 0,
        "{http:?}"
    );
    assert_eq!(
        (
            http.member_id,
            http.leader_id,
            &http.version,
            http.raft_term
        ),
        (
            grpc.member_id,
            grpc.leader_id,
            &grpc.version,
            grpc.raft_term
        )
    );

    // etcd wants a client certificate.
    let no_cert = TlsMaterial {
        cert_pem: None,
        key_pem: None,
        ..good.clone()
    };
    let err = member_status(&member(no_cert), TIMEOUT)
        .await
        .expect_err("no client cert")
        .to_string();
    assert!(err.starts_with("member m0: "), "{err}");

    // A CA that did not sign the server's certificate.
    let wrong_ca = TlsMaterial {
        ca_pem: pem.client_cert_pem.clone(),
        ..good.clone()
    };
    let err = member_status(&member(wrong_ca), TIMEOUT)
        .await
        .expect_err("wrong CA")
        .to_string();
    assert!(err.starts_with("member m0: connect: "), "{err}");
    assert!(err.contains("certificate"), "{err}");

    // A broken key is named, never shown.
    let bad_key = TlsMaterial {
        key_pem: Some("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n".into()),
        ..good.clone()
    };
    let err = member_status(&member(bad_key), TIMEOUT)
        .await
        .expect_err("bad key")
        .to_string();
    assert!(err.starts_with("member m0: connect: "), "{err}");
    assert!(
        err.contains("private key") || err.contains("certificate or key"),
        "{err}"
    );
    assert!(
        !err.contains("c2VjcmV0") && !err.contains("PRIVATE KEY"),
        "{err}"
    );
    let half = TlsMaterial {
        key_pem: None,
        ..good
    };
    let err = member_status(&member(half), TIMEOUT)
        .await
        .expect_err("cert without key")
        .to_string();
    assert!(
        err.ends_with("client certificate and key must be given together"),
        "{err}"
    );
}

/// An etcd serving HTTP on its own port (`--listen-client-http-urls`), so
/// the client URL speaks gRPC only.
struct GrpcOnlyEtcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for GrpcOnlyEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn grpc_only_etcd() -> GrpcOnlyEtcd {
    let bins = omni_testkit::etcd_bins().expect("etcd binaries");
    let dir = tempfile::tempdir().expect("tmp");
    let (client, http, peer) = (free_port(), free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(&bins.etcd)
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--listen-client-http-urls=http://127.0.0.1:{http}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=default={peer_url}"))
        .args(["--unsafe-no-fsync", "--log-level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd");
    GrpcOnlyEtcd {
        child,
        url,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_url_without_gateway_is_asked_over_grpc() {
    let etcd = grpc_only_etcd();
    let m = MemberEndpoint {
        name: "m0".into(),
        urls: vec![etcd.url.clone()],
        tls: None,
    };
    let mut last = None;
    for _ in 0..100 {
        if let Ok(s) = grpc_status(&m, TIMEOUT).await {
            if s.leader_id != 0 {
                last = Some(s);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grpc = last.expect("etcd did not become ready");
    let s = member_status(&m, TIMEOUT).await.expect("probe");
    assert_eq!((s.member_id, &s.version), (grpc.member_id, &grpc.version));
    assert!(s.is_leader(), "{s:?}");
}
