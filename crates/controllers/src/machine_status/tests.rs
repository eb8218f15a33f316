use std::sync::Arc;

use omni_resources::meta::ResourceKey;
use omni_resources::{LABEL_CLUSTER, LABEL_ROLE_CONTROLPLANE};
use omni_runtime::Runtime;
use omni_testkit::EtcdCluster;
use tokio_util::sync::CancellationToken;

use super::*;

fn status(reachable: bool, error: &str) -> MachineStatusSpec {
    MachineStatusSpec {
        reachable,
        etcdversion: "3.5.16".into(),
        memberid: "8e9e05c52164694d".into(),
        leader: true,
        dbsize: 20480,
        error: error.into(),
        lastchecked: Timestamp::from_unix(1),
    }
}

#[test]
fn a_failed_probe_keeps_identity_and_says_why() {
    let urls = vec!["http://127.0.0.1:1".to_string()];
    let err = SourceError::Status {
        member: "m".into(),
        detail: "timed out after 1s (member down?)".into(),
    };
    let next = next_status(&status(true, ""), &urls, &Err(err), Timestamp::from_unix(5));
    assert!(!next.reachable);
    assert!(!next.leader);
    assert_eq!(next.memberid, "8e9e05c52164694d");
    assert_eq!(next.etcdversion, "3.5.16");
    assert_eq!(next.lastchecked, Timestamp::from_unix(5));
    assert_eq!(
        next.error,
        "etcd member unreachable at http://127.0.0.1:1: status call failed: timed out after 1s (member down?)"
    );
    let ok = MemberStatus {
        member_id: 0xab,
        leader_id: 0xcd,
        version: "3.5.17".into(),
        db_size: 1,
        ..MemberStatus::default()
    };
    let next = next_status(&next, &urls, &Ok(ok), Timestamp::from_unix(6));
    assert!(next.reachable && !next.leader);
    assert_eq!((next.memberid.as_str(), next.error.as_str()), ("ab", ""));
    assert_eq!(
        next_status(
            &next,
            &[],
            &Err(SourceError::NoUrls { member: "m".into() }),
            Timestamp::from_unix(7)
        )
        .error,
        "no etcd client URLs configured"
    );
}

#[test]
fn cluster_machine_status_stages() {
    let s = cluster_machine_status("m1", false, None);
    assert_eq!(
        (s.ready, s.stage.as_str(), s.error.as_str()),
        (
            false,
            "unregistered",
            "machine m1 is not registered (no Machines resource)"
        )
    );
    assert_eq!(cluster_machine_status("m1", true, None).stage, "waiting");
    let s = cluster_machine_status("m1", true, Some(&status(true, "")));
    assert!(s.ready);
    assert_eq!(
        (s.stage.as_str(), s.etcdmemberid.as_str()),
        ("running", "8e9e05c52164694d")
    );
    let s = cluster_machine_status("m1", true, Some(&status(true, "member has no leader")));
    assert!(!s.ready);
    assert_eq!(s.stage, "degraded");
    let s = cluster_machine_status("m1", true, Some(&status(false, "unreachable")));
    assert_eq!((s.ready, s.stage.as_str()), (false, "unreachable"));
}

async fn spec_of<K: Kind>(state: &State, id: &str) -> Option<(Resource, K)> {
    state.get_spec::<K>(NS_DEFAULT, id).await.unwrap()
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Real etcd: statuses become ready with the member id, and an unreachable
/// member shows an error, through both controllers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_real_etcd_and_reports_an_unreachable_member() {
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    let state = State::memory();
    let mut rt = Runtime::new(state.clone());
    let settings = MachineStatusSettings {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        ..MachineStatusSettings::default()
    };
    rt.register(Arc::new(MachineStatusController::new(settings)))
        .unwrap();
    rt.register(Arc::new(ClusterMachineStatusController))
        .unwrap();
    rt.register(Arc::new(crate::cluster_machines::ClusterMachineController))
        .unwrap();
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(rt.run(cancel.clone()));

    let machine = MachineSpec {
        etcdendpoints: vec![etcd.member(0).client_url()],
        ..MachineSpec::default()
    };
    state
        .create(Resource::from_spec(
            MachineSpec::TYPE,
            NS_DEFAULT,
            "m1",
            &machine,
        ))
        .await
        .unwrap();
    let mut node = Resource::new(
        "MachineSetNodes.omni.sidero.dev",
        NS_DEFAULT,
        "m1",
        serde_json::json!({}),
    );
    node.metadata
        .labels
        .insert(LABEL_CLUSTER.into(), "c1".into());
    node.metadata
        .labels
        .insert(LABEL_ROLE_CONTROLPLANE.into(), String::new());
    state.create(node).await.unwrap();

    let ms = eventually("machine status reachable", async || {
        spec_of::<MachineStatusSpec>(&state, "m1")
            .await
            .map(|(_, s)| s)
            .filter(|s| s.reachable)
    })
    .await;
    assert!(ms.leader, "a single member leads: {ms:?}");
    assert!(ms.etcdversion.starts_with("3."), "{ms:?}");
    assert!(!ms.memberid.is_empty() && ms.dbsize > 0 && ms.error.is_empty());
    let (res, cms) = eventually("cluster machine status ready", async || {
        spec_of::<ClusterMachineStatusSpec>(&state, "m1")
            .await
            .filter(|(_, s)| s.ready)
    })
    .await;
    assert_eq!(cms.etcdmemberid, ms.memberid);
    assert_eq!(res.metadata.owner, CLUSTER_MACHINE_STATUS);
    assert_eq!(res.metadata.labels[LABEL_CLUSTER], "c1");
    assert!(res.metadata.labels.contains_key(LABEL_ROLE_CONTROLPLANE));

    etcd.stop_member(0).unwrap();
    let ms = eventually("machine status unreachable", async || {
        spec_of::<MachineStatusSpec>(&state, "m1")
            .await
            .map(|(_, s)| s)
            .filter(|s| !s.reachable)
    })
    .await;
    assert!(
        ms.error
            .starts_with("etcd member unreachable at http://127.0.0.1:"),
        "{}",
        ms.error
    );
    eventually("cluster machine status unreachable", async || {
        spec_of::<ClusterMachineStatusSpec>(&state, "m1")
            .await
            .filter(|(_, s)| s.stage == "unreachable" && s.error == ms.error)
    })
    .await;

    // Removing the machine set node removes the cluster machine status;
    // removing the machine removes its status.
    state
        .destroy(&ResourceKey::new(
            NS_DEFAULT,
            "MachineSetNodes.omni.sidero.dev",
            "m1",
        ))
        .await
        .unwrap();
    state
        .destroy(&ResourceKey::new(NS_DEFAULT, MachineSpec::TYPE, "m1"))
        .await
        .unwrap();
    eventually("statuses gone", async || {
        let a = spec_of::<ClusterMachineStatusSpec>(&state, "m1").await;
        let b = spec_of::<MachineStatusSpec>(&state, "m1").await;
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    cancel.cancel();
    handle.await.unwrap();
}
