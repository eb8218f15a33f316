//! Cluster templates end to end: the seed's template against machines that
//! are members of real etcd clusters (3 members and 1), through the real
//! `omni` and `omnictl` binaries: diff, sync, statuses, unreachable members,
//! the edit-and-apply path, validation against the server, delete.

mod common;

use std::time::Duration;

use common::*;
use omni_resources::specs::cluster::{ClusterMachineStatusSpec, ClusterSpec};
use omni_resources::specs::machine::MachineStatusSpec;
use omni_resources::specs::Kind;
use omni_resources::{Resource, LABEL_CLUSTER};
use omni_testkit::EtcdCluster;

const CP: &str = "1dd4397b-37f1-4196-9c37-becef670b64a";
const W1: &str = "0d1f01c3-0a8a-4560-8745-bb792e3dfaad";
const W2: &str = "a0f29661-cd2d-4e25-a6c9-da5ca4c48d58";

/// The seed guide's template, verbatim.
const SEED_TEMPLATE: &str = "kind: Cluster
name: talos-default
kubernetes:
  version: v1.28.2
talos:
  version: v1.5.5
features:
  backupConfiguration:
    interval: 1h
---
kind: ControlPlane
machines:
  - 1dd4397b-37f1-4196-9c37-becef670b64a
---
kind: Workers
machines:
  - 0d1f01c3-0a8a-4560-8745-bb792e3dfaad
  - a0f29661-cd2d-4e25-a6c9-da5ca4c48d58
";

/// The seed guide's diff output, verbatim. The hunk starts at `features:`,
/// line 15 + (number of finalizers) of the rendered cluster: 19 with four.
const SEED_DIFF: &str = "--- Clusters.omni.sidero.dev(default/talos-default)
+++ Clusters.omni.sidero.dev(default/talos-default)
@@ -19,4 +19,7 @@
   features:
     enableworkloadproxy: false
     diskencryption: false
-  backupconfiguration: null
+  backupconfiguration:
+    interval:
+      seconds: 3600
+      nanos: 0
";

/// The seed's edit that enables backups on `SEED_CLUSTER`.
const SEED_EDIT: &str = "  backupconfiguration:
    interval:
      seconds: 3600
      nanos: 0
";

/// The controllers that keep per-cluster outputs, each guarding clusters
/// with its finalizer: four, as in the seed, so the seed's diff holds to
/// the hunk header.
const FINALIZERS: [&str; 4] = [
    "ClusterController",
    "ClusterMachineStatusController",
    "EtcdBackupController",
    "EtcdBackupDrillController",
];

fn without_backups(template: &str) -> String {
    template.replace("features:\n  backupConfiguration:\n    interval: 1h\n", "")
}

fn machines_only(machines: &[(&str, String)]) -> String {
    machines
        .iter()
        .map(|(id, url)| {
            format!("metadata:\n  namespace: default\n  type: Machines.omni.sidero.dev\n  id: {id}\nspec:\n  etcdendpoints:\n    - {url}\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

fn ok(omni: &Omni, args: &[&str]) -> String {
    omni.ctl_ok(args)
}

/// `omnictl cluster template -f FILE <cmd>`, the seed's argument order.
fn template(omni: &Omni, file: &std::path::Path, cmd: &str) -> std::process::Output {
    omni.ctl(&["cluster", "template", "-f", path_str(file), cmd])
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn list(omni: &Omni, kind: &str, cluster: &str) -> Vec<Resource> {
    let selector = format!("{LABEL_CLUSTER}={cluster}");
    omni.client()
        .list(kind, "default", Some(&selector))
        .await
        .unwrap()
}

async fn machine_status(omni: &Omni, id: &str) -> MachineStatusSpec {
    let r = omni
        .client()
        .get(MachineStatusSpec::TYPE, "default", id)
        .await
        .unwrap();
    r.spec_as().unwrap()
}

async fn cluster_statuses(omni: &Omni, cluster: &str) -> Vec<(String, ClusterMachineStatusSpec)> {
    list(omni, ClusterMachineStatusSpec::TYPE, cluster)
        .await
        .into_iter()
        .map(|r| (r.metadata.id.clone(), r.spec_as().unwrap()))
        .collect()
}

async fn cluster(omni: &Omni, name: &str) -> Option<Resource> {
    match omni.client().get(ClusterSpec::TYPE, "default", name).await {
        Ok(r) => Some(r),
        Err(e) if e.is_not_found() => None,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_template_against_a_three_member_etcd() {
    let mut etcd = EtcdCluster::start(3).await.unwrap();
    let omni = Omni::start(&["--machine-probe-interval", "300ms"]).await;
    let urls = etcd.client_urls();
    let machines = [
        (CP, urls[0].clone()),
        (W1, urls[1].clone()),
        (W2, urls[2].clone()),
    ];
    let out = omni.apply_yaml(&machines_only(&machines));
    assert!(out.status.success(), "{}", stderr(&out));

    // A cluster made from the template without backups.
    let plain = omni.write_file("plain.yaml", &without_backups(SEED_TEMPLATE));
    assert_eq!(
        stdout(&template(&omni, &plain, "validate")),
        format!("template {} is valid\n", path_str(&plain))
    );
    let synced = ok(
        &omni,
        &["cluster", "template", "sync", "-f", path_str(&plain)],
    );
    let created: Vec<&str> = synced.lines().collect();
    assert_eq!(created.len(), 6, "{synced}");
    assert_eq!(
        created[0],
        "* creating Clusters.omni.sidero.dev(default/talos-default)"
    );
    until("the four finalizers", async || {
        let mut f = cluster(&omni, "talos-default").await?.metadata.finalizers;
        f.sort();
        (f == FINALIZERS).then_some(())
    })
    .await;

    // The seed's diff, then its sync.
    let seed = omni.write_file("seed.yaml", SEED_TEMPLATE);
    let diff = template(&omni, &seed, "diff");
    assert!(diff.status.success(), "{}", stderr(&diff));
    assert_eq!(stdout(&diff), SEED_DIFF);
    assert_eq!(
        ok(
            &omni,
            &["cluster", "template", "-f", path_str(&seed), "sync"]
        ),
        "* updating Clusters.omni.sidero.dev(default/talos-default)\n"
    );
    assert_eq!(
        ok(
            &omni,
            &["cluster", "template", "-f", path_str(&seed), "sync"]
        ),
        "nothing changed: cluster talos-default matches the template\n"
    );
    assert_eq!(stdout(&template(&omni, &seed, "diff")), "");

    // Statuses: every member reachable, exactly one leader, distinct ids.
    let ready = until("three ready cluster machines", async || {
        let s = cluster_statuses(&omni, "talos-default").await;
        (s.len() == 3 && s.iter().all(|(_, st)| st.ready)).then_some(s)
    })
    .await;
    let mut ids: Vec<&str> = ready.iter().map(|(_, s)| s.etcdmemberid.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ready:?}");
    let mut leaders = 0;
    for (id, _) in &machines {
        let ms = machine_status(&omni, id).await;
        assert!(ms.reachable && ms.error.is_empty(), "{ms:?}");
        assert!(ms.etcdversion.starts_with("3.") && ms.dbsize > 0, "{ms:?}");
        leaders += usize::from(ms.leader);
    }
    assert_eq!(leaders, 1);
    let status = ok(
        &omni,
        &["cluster", "template", "status", "-f", path_str(&seed)],
    );
    assert!(status.contains("   3/3\n"), "{status}");
    assert!(
        status.contains("talos-default-workers          worker         2          2"),
        "{status}"
    );

    // An unreachable member shows an error.
    etcd.stop_member(2).unwrap();
    let (_, down) = until("the stopped member's status", async || {
        let s = cluster_statuses(&omni, "talos-default").await;
        s.into_iter()
            .find(|(id, st)| id == W2 && st.stage == "unreachable")
    })
    .await;
    assert!(!down.ready);
    assert!(
        down.error
            .starts_with(&format!("etcd member unreachable at {}: ", urls[2])),
        "{}",
        down.error
    );
    assert!(
        down.error
            .ends_with("tcp connect error: Connection refused (os error 111)"),
        "{}",
        down.error
    );
    let ms = machine_status(&omni, W2).await;
    assert!(!ms.reachable && ms.error == down.error, "{ms:?}");
    let status = ok(
        &omni,
        &["cluster", "template", "status", "-f", path_str(&seed)],
    );
    assert!(status.contains("   2/3\n"), "{status}");
    assert!(status.contains("false   unreachable   "), "{status}");

    // The seed's "Cluster resource" path meets the template's: the cluster
    // YAML as the seed shows it undoes the backups (the template diff is the
    // seed's again); the seed's edit restores the very spec the template set.
    let by_template = cluster(&omni, "talos-default").await.unwrap().spec;
    let yaml = ok(&omni, &["get", "cluster", "talos-default", "-o", "yaml"]);
    assert!(
        yaml.contains("  finalizers:\n") && yaml.contains("    - ClusterController\n"),
        "{yaml}"
    );
    assert!(yaml.ends_with(&format!("spec:\n  installimage: \"\"\n  kubernetesversion: 1.28.2\n  talosversion: 1.5.5\n  features:\n    enableworkloadproxy: false\n    diskencryption: false\n{SEED_EDIT}")), "{yaml}");
    let out = omni.apply_yaml(SEED_CLUSTER);
    assert!(stdout(&out).contains("updated"), "{}", stderr(&out));
    assert_eq!(stdout(&template(&omni, &seed, "diff")), SEED_DIFF);
    let out = omni.apply_yaml(&format!("{SEED_CLUSTER}{SEED_EDIT}"));
    assert!(stdout(&out).contains("updated"), "{}", stderr(&out));
    assert_eq!(
        cluster(&omni, "talos-default").await.unwrap().spec,
        by_template
    );
    assert_eq!(stdout(&template(&omni, &seed, "diff")), "");

    // The first automatic backup comes at once (no backups yet).
    let selector = format!("{LABEL_CLUSTER}=talos-default");
    until("the first automatic backup", async || {
        let out = omni.ctl(&["get", "etcdbackup", "--selector", &selector]);
        (stdout(&out).lines().count() >= 2).then_some(())
    })
    .await;

    // Delete tears the cluster down; machines, backups and keys stay.
    let out = ok(
        &omni,
        &["cluster", "template", "-f", path_str(&seed), "delete"],
    );
    assert_eq!(
        out,
        "* destroying Clusters.omni.sidero.dev(default/talos-default) (tearing down: its machine sets and nodes go first)\n"
    );
    until("the cluster gone", async || {
        cluster(&omni, "talos-default")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    for kind in [
        "MachineSets.omni.sidero.dev",
        "MachineSetNodes.omni.sidero.dev",
        "ClusterMachines.omni.sidero.dev",
        ClusterMachineStatusSpec::TYPE,
    ] {
        let left = until("owned resources gone", async || {
            let left = list(&omni, kind, "talos-default").await;
            left.is_empty().then_some(left)
        })
        .await;
        assert!(left.is_empty(), "{kind}: {left:?}");
    }
    assert_eq!(
        omni.client()
            .list("Machines.omni.sidero.dev", "default", None)
            .await
            .unwrap()
            .len(),
        3
    );
    let out = omni.ctl(&["get", "etcdbackup", "--selector", &selector]);
    assert!(
        stdout(&out).lines().count() >= 2,
        "backups must stay: {}",
        stderr(&out)
    );
    ok(&omni, &["get", "backupdata", "talos-default"]);
    let out = template(&omni, &seed, "status");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cluster \"talos-default\" does not exist"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_member_cluster_and_checks_against_the_server() {
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    let omni = Omni::start(&["--machine-probe-interval", "300ms"]).await;
    let m = "5b0c3a1e-8f6d-4c1b-9e2a-3d4f5a6b7c8d";
    let out = omni.apply_yaml(&machines_only(&[(m, etcd.member(0).client_url())]));
    assert!(out.status.success(), "{}", stderr(&out));
    let one = format!("kind: Cluster\nname: one\nkubernetes:\n  version: v1.28.2\ntalos:\n  version: v1.5.5\n---\nkind: ControlPlane\nmachines:\n  - {m}\n");
    let one_file = omni.write_file("one.yaml", &one);

    // Unknown machines are named; nothing is created.
    let two = one.replace("name: one", "name: two").replace(m, CP);
    let two_file = omni.write_file("two.yaml", &two);
    let out = template(&omni, &two_file, "sync");
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!("error: cannot sync template {}: invalid template: 1 problem in the template:\n  document 2 (ControlPlane): machines[0]: machine \"{CP}\" is not registered (no Machines resource)\n", path_str(&two_file))
    );
    assert!(cluster(&omni, "two").await.is_none());

    // A file that is broken on its own needs no server to be refused.
    let bad = omni.write_file(
        "bad.yaml",
        &one.replace("kind: ControlPlane", "kind: ControlPlanes"),
    );
    let out = omni.ctl(&[
        "--endpoint",
        "http://127.0.0.1:1",
        "cluster",
        "template",
        "validate",
        "-f",
        path_str(&bad),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("document 2: kind: unknown kind \"ControlPlanes\"; expected Cluster, ControlPlane or Workers"), "{}", stderr(&out));

    // A valid file is valid offline too; the machine checks that need the
    // server are skipped with a note, or required with --online.
    let good = omni.write_file("good.yaml", &one);
    let offline = |extra: &[&str]| {
        let mut args = vec![
            "--endpoint",
            "http://127.0.0.1:1",
            "cluster",
            "template",
            "validate",
            "-f",
            path_str(&good),
        ];
        args.extend_from_slice(extra);
        omni.ctl(&args)
    };
    let out = offline(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("template {} is valid\n", path_str(&good))
    );
    assert!(
        stderr(&out).contains("machines not checked against omni"),
        "{}",
        stderr(&out)
    );
    let out = offline(&["--online"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot check the template's machines against omni (--online)"),
        "{}",
        stderr(&out)
    );

    // An interval outside the server's bounds is refused by the server;
    // sync stops at the cluster, before anything else is created.
    let short = omni.write_file(
        "short.yaml",
        &one.replace(
            "---\n",
            "features:\n  backupConfiguration:\n    interval: 30m\n---\n",
        ),
    );
    let out = template(&omni, &short, "sync");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "spec.backupconfiguration.interval: backup interval must be greater than 1h0m0s, actual 30m0s"
        ),
        "{}",
        stderr(&out)
    );
    assert!(cluster(&omni, "one").await.is_none());
    assert!(list(&omni, "MachineSets.omni.sidero.dev", "one")
        .await
        .is_empty());

    ok(
        &omni,
        &["cluster", "template", "sync", "-f", path_str(&one_file)],
    );
    let (_, st) = until("the single member ready", async || {
        let s = cluster_statuses(&omni, "one").await;
        s.into_iter().find(|(_, st)| st.ready)
    })
    .await;
    assert!(!st.etcdmemberid.is_empty());
    assert!(machine_status(&omni, m).await.leader);

    // The machine now belongs to "one": another cluster may not take it.
    let two_taking = one.replace("name: one", "name: two");
    let two_file = omni.write_file("two.yaml", &two_taking);
    let out = template(&omni, &two_file, "validate");
    assert!(!out.status.success());
    assert!(stderr(&out).ends_with(&format!("  document 2 (ControlPlane): machines[0]: machine \"{m}\" belongs to cluster \"one\"\n")), "{}", stderr(&out));

    // The only member stops: its statuses say so.
    etcd.stop_member(0).unwrap();
    let (_, down) = until("the unreachable member", async || {
        let s = cluster_statuses(&omni, "one").await;
        s.into_iter().find(|(_, st)| st.stage == "unreachable")
    })
    .await;
    assert!(
        !down.ready && down.error.contains("unreachable"),
        "{down:?}"
    );

    // It comes back: ready again.
    etcd.start_member(0).await.unwrap();
    until("the member ready again", async || {
        let s = cluster_statuses(&omni, "one").await;
        s.into_iter().find(|(_, st)| st.ready)
    })
    .await;

    ok(
        &omni,
        &["cluster", "template", "delete", "-f", path_str(&one_file)],
    );
    until("cluster one gone", async || {
        cluster(&omni, "one").await.is_none().then_some(())
    })
    .await;
    assert!(list(&omni, "MachineSetNodes.omni.sidero.dev", "one")
        .await
        .is_empty());
    // Deleting it again is an error in words.
    let out = template(&omni, &one_file, "delete");
    assert_eq!(stderr(&out), "error: cluster \"one\" does not exist\n");
}
