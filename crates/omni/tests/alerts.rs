//! Alerts end to end: the real omni and omnictl, a real etcd, and real HTTP
//! receivers on loopback (one of them down at first). A backup that fails
//! is announced exactly once per receiver (also across a restart of omni),
//! resolved when a backup succeeds again, and delivered late to a receiver
//! that was down, with backups running meanwhile. Receiver specs are
//! validated by field and their secrets redacted below admin.

mod common;
mod ops;
mod receiver;

use common::*;
use omni_testkit::EtcdCluster;
use ops::spec;
use receiver::{receiver_yaml, Inbox};

const SECRET_HEADER: &str = "Bearer alert-s3cret-token";

fn attempt(omni: &Omni) -> i64 {
    backup_status(omni, "talos-default")["lastbackupattempt"]["seconds"]
        .as_i64()
        .unwrap_or(0)
}

/// Waits until `n` more backup attempts have been made (each one a
/// reconcile of the alert controller too).
async fn more_attempts(omni: &Omni, n: usize) {
    let mut seen = vec![attempt(omni)];
    eventually("more backup attempts", || {
        let a = attempt(omni);
        if !seen.contains(&a) {
            seen.push(a);
        }
        (seen.len() > n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_is_announced_once_resolved_and_delivered_late_when_the_receiver_was_down()
{
    let mut etcd = EtcdCluster::start(1).await.unwrap();
    etcd.put("/k", "v").await.unwrap();
    let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_port = up.local_addr().unwrap().port();
    let inbox = Inbox::serve(up).await;
    let down_port = omni_testkit::free_port().unwrap();

    let mut omni = Omni::start(&[
        "--etcd-backup-tick",
        "1s",
        "--etcd-backup-min-interval",
        "2s",
        "--etcd-backup-jitter",
        "0s",
        "--etcd-backup-retry-backoff",
        "1s",
    ])
    .await;
    let base = format!("http://127.0.0.1:{up_port}");
    let receivers = [
        receiver_yaml(
            "hook",
            "webhook",
            &format!("{base}/hook"),
            &format!("  headers:\n    Authorization: {SECRET_HEADER}\n  events: [backup-failed]\n  resendinterval:\n    seconds: 3600\n"),
        ),
        receiver_yaml("am", "alertmanager", &format!("{base}/am"), "  events: [backup-failed, backup-stale]\n"),
        receiver_yaml("chat", "slack", &format!("{base}/slack"), "  events: [backup-failed]\n"),
        receiver_yaml(
            "late",
            "webhook",
            &format!("http://127.0.0.1:{down_port}/late"),
            "  events: [backup-failed]\n",
        ),
    ]
    .join("---\n");
    let out = omni.apply_yaml(&receivers);
    assert!(out.status.success(), "{}", stderr(&out));

    register_members(&omni, "talos-default", &etcd);
    let cluster = "metadata:\n  type: cluster\n  id: talos-default\nspec:\n  backupconfiguration:\n    interval:\n      seconds: 2\n";
    assert!(omni.apply_yaml(cluster).status.success());
    eventually("a first good backup", || {
        (backup_status(&omni, "talos-default")["status"] == 1).then_some(())
    })
    .await;
    assert!(
        inbox.all().is_empty(),
        "nothing fires while backups work: {:?}",
        inbox.all()
    );

    // Backups fail: each receiver that wants it hears of it.
    etcd.stop_member(0).unwrap();
    let firing = eventually("the firing webhook", || {
        inbox
            .webhook("/hook", "backup-failed", "firing")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(firing.auth.as_deref(), Some(SECRET_HEADER));
    assert_eq!(firing.body["cluster"], "talos-default");
    assert_eq!(firing.body["severity"], "critical");
    assert!(firing.body["endsAt"].is_null());
    assert!(
        firing.body["description"]
            .as_str()
            .unwrap()
            .contains("no etcd member could provide"),
        "{}",
        firing.body
    );
    eventually("the alertmanager and slack messages", || {
        let am = inbox.on("/am/api/v2/alerts");
        let slack = inbox.on("/slack");
        (!am.is_empty() && !slack.is_empty()).then_some(())
    })
    .await;
    // Two intervals (2s each) without a good backup: stale, to the one
    // receiver that asked for it.
    let stale = eventually("the stale alert", || {
        inbox
            .on("/am/api/v2/alerts")
            .into_iter()
            .find(|r| r.body[0]["labels"]["alertname"] == "backup-stale")
    })
    .await;
    assert_eq!(stale.body[0]["labels"]["cluster"], "talos-default");
    assert!(inbox
        .on("/hook")
        .iter()
        .all(|r| r.body["alert"] == "backup-failed"));

    // Delivery is at least once: a kill between the send and its record
    // would send again. Once the record is stored, several failed attempts
    // (and reconciles) and a restart later there is still one firing
    // message.
    eventually("the slack delivery recorded", || {
        let s = spec(&omni, "alertstatus", "talos-default.backup-failed")?;
        let chat = s["receivers"]
            .as_array()?
            .iter()
            .find(|d| d["receiver"] == "chat")?
            .clone();
        (chat["sent"] != "").then_some(())
    })
    .await;
    more_attempts(&omni, 2).await;
    omni.restart().await;
    more_attempts(&omni, 3).await;
    assert_eq!(inbox.webhook("/hook", "backup-failed", "firing").len(), 1);
    assert_eq!(
        inbox.on("/slack").len(),
        1,
        "slack got a duplicate: {:?}",
        inbox.on("/slack")
    );

    // The receiver that is down: the failed delivery is recorded, to retry.
    let status = eventually("the down receiver's failed delivery", || {
        let s = spec(&omni, "alertstatus", "talos-default.backup-failed")?;
        let late = s["receivers"]
            .as_array()?
            .iter()
            .find(|d| d["receiver"] == "late")?
            .clone();
        (late["attempts"].as_u64()? >= 2).then_some((s, late))
    })
    .await;
    assert_eq!(status.0["state"], "firing");
    assert_eq!(status.1["sent"], "");
    let err = status.1["error"].as_str().unwrap();
    assert!(err.contains("sending failed"), "{err}");
    assert!(
        !err.contains(&down_port.to_string()),
        "the URL leaked: {err}"
    );

    // It comes up: the alert arrives. (Backups kept running while it was
    // down: the attempts counted above happened meanwhile.)
    let late_inbox = Inbox::serve(
        tokio::net::TcpListener::bind(("127.0.0.1", down_port))
            .await
            .unwrap(),
    )
    .await;
    eventually("the late delivery", || {
        (!late_inbox
            .webhook("/late", "backup-failed", "firing")
            .is_empty())
        .then_some(())
    })
    .await;

    // etcd is back: a good backup resolves the alert everywhere.
    etcd.start_member(0).await.unwrap();
    etcd.wait_healthy().await.unwrap();
    let resolved = eventually("the resolved webhook", || {
        inbox
            .webhook("/hook", "backup-failed", "resolved")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(resolved.body["startsAt"], firing.body["startsAt"]);
    assert!(resolved.body["endsAt"].is_string());
    eventually("resolved to every receiver", || {
        let late = late_inbox.webhook("/late", "backup-failed", "resolved");
        let slack = inbox.on("/slack");
        (!late.is_empty() && slack.len() >= 2).then_some(())
    })
    .await;
    let st = spec(&omni, "alertstatus", "talos-default.backup-failed").unwrap();
    assert_eq!(st["state"], "resolved");
    assert_eq!(inbox.webhook("/hook", "backup-failed", "firing").len(), 1);
    assert_eq!(inbox.webhook("/hook", "backup-failed", "resolved").len(), 1);

    // The cluster goes: so do its resolved, delivered alerts.
    omni.ctl_ok(&["delete", "cluster", "talos-default"]);
    eventually("the cluster's alert statuses gone", || {
        let listed = omni.ctl_ok(&["get", "alertstatuses", "-o", "json"]);
        (!listed.contains("talos-default")).then_some(())
    })
    .await;

    // Secrets never reach the log.
    let log = omni.log_text();
    assert!(!log.contains("alert-s3cret-token"), "header value logged");
    assert!(!log.contains(&format!("{up_port}/hook")), "URL logged");
    assert!(log.contains("alert delivered"), "{log}");

    // The payloads as received, for docs/alerts.md.
    for r in inbox.all().iter().chain(late_inbox.all().iter()) {
        println!(
            "POST {}\n{}\n",
            r.path,
            serde_json::to_string_pretty(&r.body).unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_are_validated_by_field_and_redacted_below_admin() {
    let omni = Omni::start(&[]).await;
    for (kind, url, extra, field) in [
        ("pager", "https://hooks.example/x", "", "spec.type"),
        ("slack", "http://hooks.example/T0/B0/XYZ", "", "spec.url"),
        ("webhook", "ftp://127.0.0.1/x", "", "spec.url"),
        (
            "webhook",
            "https://hooks.example/x",
            "  events: [backup-exploded]\n",
            "spec.events[0]",
        ),
        (
            "webhook",
            "https://hooks.example/x",
            "  staleafterintervals: 0\n",
            "spec.staleafterintervals",
        ),
    ] {
        let out = omni.apply_yaml(&receiver_yaml("bad", kind, url, extra));
        assert!(!out.status.success(), "{kind} {url} {extra} was accepted");
        let err = stderr(&out);
        assert!(err.contains(field), "{field} not named in: {err}");
        assert!(!err.contains("T0/B0/XYZ"), "URL echoed: {err}");
    }
    assert!(
        spec(&omni, "alertreceiver", "bad").is_none(),
        "a bad spec was stored"
    );

    let yaml = receiver_yaml(
        "chat",
        "slack",
        "https://hooks.slack.example/services/T0/B0/XYZ",
        &format!("  headers:\n    Authorization: {SECRET_HEADER}\n"),
    );
    let out = omni.apply_yaml(&yaml);
    assert!(out.status.success(), "{}", stderr(&out));

    // Receivers hold secrets: only admins write them.
    let operator = omni.ctl_ok(&["token", "create", "--role", "operator"]);
    let path = omni.write_file("receiver.yaml", &yaml.replace("id: chat", "id: sneaky"));
    let out = omni.ctl_as(operator.trim(), &["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success(), "an operator wrote a receiver");
    assert!(stderr(&out).contains("alert receivers"), "{}", stderr(&out));
    assert!(spec(&omni, "alertreceiver", "sneaky").is_none());

    let reader = omni.ctl_ok(&["token", "create", "--role", "reader"]);
    let seen = stdout(&omni.ctl_as(
        reader.trim(),
        &["get", "alertreceiver", "chat", "-o", "yaml"],
    ));
    assert!(seen.contains("url: <redacted>"), "{seen}");
    assert!(seen.contains("Authorization: <redacted>"), "{seen}");
    assert!(!seen.contains("XYZ") && !seen.contains("s3cret"), "{seen}");
    let admin = omni.ctl_ok(&["get", "alertreceivers", "chat", "-o", "yaml"]);
    assert!(
        admin.contains("T0/B0/XYZ") && admin.contains(SECRET_HEADER),
        "{admin}"
    );
    // Defaults are filled in and shown.
    assert!(admin.contains("staleafterintervals: 2"), "{admin}");
    assert!(admin.contains("sendresolved: true"), "{admin}");

    // The examples of docs/alerts.md apply as they are.
    let doc = include_str!("../../../docs/alerts.md");
    let example = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let out = omni.apply_yaml(example);
    assert!(out.status.success(), "{}", stderr(&out));
    for id in ["ops-webhook", "alertmanager", "team-chat"] {
        assert!(spec(&omni, "alertreceiver", id).is_some(), "{id} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfigured_store_fires_until_s3_is_configured() {
    let s3 = omni_testkit::S3Server::start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Inbox::serve(listener).await;
    let omni = Omni::start(&["--etcd-backup-s3"]).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let yaml = receiver_yaml(
        "hook",
        "webhook",
        &url,
        "  events: [store-config-invalid]\n",
    );
    assert!(omni.apply_yaml(&yaml).status.success());

    let firing = eventually("the store alert", || {
        inbox
            .webhook("/hook", "store-config-invalid", "firing")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(firing.body["description"], "not initialized");
    assert_eq!(firing.body["cluster"], "");
    let listed = omni.ctl_ok(&["get", "alertstatuses"]);
    assert!(
        listed.contains("store-config-invalid") && listed.contains("firing"),
        "{listed}"
    );

    ops::configure_s3(&omni, &s3).await;
    eventually("the store alert resolved", || {
        (!inbox
            .webhook("/hook", "store-config-invalid", "resolved")
            .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(inbox.on("/hook").len(), 2, "{:?}", inbox.all());
}
