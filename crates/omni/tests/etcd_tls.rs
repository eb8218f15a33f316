//! etcd over TLS with client certificates: the right CA works, a wrong CA
//! fails with a clear status and stores nothing; the client key is a secret.

mod common;

use common::*;
use omni_testkit::EtcdCluster;

fn block(pem: &str) -> String {
    pem.trim_end()
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect()
}

fn machine_yaml(url: &str, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "metadata:\n  type: Machines.omni.sidero.dev\n  id: tls-m0\nspec:\n  etcdendpoints:\n    - {url}\n  etcdca: |\n{}  etcdcert: |\n{}  etcdkey: |\n{}",
        block(ca),
        block(cert),
        block(key)
    )
}

fn status(omni: &Omni) -> serde_json::Value {
    backup_status(omni, "tls")
}

async fn backup(omni: &Omni, code: i64) -> serde_json::Value {
    let at = now();
    let req = format!(
        "metadata:\n  type: etcdmanualbackup\n  id: tls\nspec:\n  backupat:\n    seconds: {at}\n"
    );
    assert!(omni.apply_yaml(&req).status.success());
    eventually(&format!("status {code}"), || {
        let s = status(omni);
        (s["status"] == code && s["lastbackupattempt"]["seconds"].as_i64() >= Some(at)).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_an_error_right_ca_backs_up() {
    let etcd = EtcdCluster::start_tls(1).await.unwrap();
    let other = EtcdCluster::start_tls(1).await.unwrap();
    etcd.put("/tls/k", "v").await.unwrap();
    let tls = etcd.tls().unwrap();
    let foreign_ca = &other.tls().unwrap().ca_pem;
    let url = etcd.member(0).client_url();
    assert!(url.starts_with("https://"), "{url}");
    let omni = Omni::start(&["--etcd-backup-tick", "1s"]).await;

    let out = omni.apply_yaml(&machine_yaml(
        &url,
        foreign_ca,
        &tls.client_cert_pem,
        &tls.client_key_pem,
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let node = "metadata:\n  type: MachineSetNodes.omni.sidero.dev\n  id: tls-m0\n  labels:\n    omni.sidero.dev/cluster: tls\n    omni.sidero.dev/role-controlplane: \"\"\nspec: {}\n---\nmetadata:\n  type: cluster\n  id: tls\nspec: {}\n";
    assert!(omni.apply_yaml(node).status.success());

    let st = backup(&omni, 2).await;
    let err = st["error"].as_str().unwrap().to_lowercase();
    assert!(
        err.contains("tls-m0")
            && (err.contains("certificate") || err.contains("tls") || err.contains("handshake")),
        "{err}"
    );
    let listed = omni.ctl_ok(&[
        "get",
        "etcdbackup",
        "--selector",
        "omni.sidero.dev/cluster=tls",
        "-o",
        "json",
    ]);
    assert!(
        listed.trim().is_empty(),
        "a backup was stored through a wrong CA: {listed}"
    );

    let out = omni.apply_yaml(&machine_yaml(
        &url,
        &tls.ca_pem,
        &tls.client_cert_pem,
        &tls.client_key_pem,
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let st = backup(&omni, 1).await;
    assert_eq!(st["error"], "");

    // The client key is an admin-only secret and never logged.
    let reader = omni.ctl_ok(&["token", "create", "--role", "reader"]);
    let seen = stdout(&omni.ctl_as(reader.trim(), &["get", "machine", "tls-m0", "-o", "yaml"]));
    assert!(seen.contains("etcdkey: <redacted>"), "{seen}");
    let key_line = tls.client_key_pem.lines().nth(1).unwrap();
    assert!(!seen.contains(key_line));
    assert!(
        !omni.log_text().contains(key_line),
        "the client key reached the log"
    );
}
