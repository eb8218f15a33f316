//! SIGKILL the server while it is writing state, many times: every write
//! that was acknowledged survives, and nothing half-written ever appears.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use omni_resources::Resource;
use serde_json::json;

fn cluster(n: u64) -> Resource {
    Resource::new(
        "Clusters.omni.sidero.dev",
        "default",
        &format!("crash-{n}"),
        json!({"installimage": format!("image-{n}"), "kubernetesversion": "1.28.2", "talosversion": format!("1.5.{n}")}),
    )
}

/// A pseudo-random delay in [min, max) ms, without a rand dependency.
fn jitter_ms(round: u64, min: u64, max: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    min + (nanos ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % (max - min)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let mut omni = Omni::start(&[]).await;
    let mut next = 0u64;
    let mut acked_total: Vec<u64> = Vec::new();
    for round in 0..6u64 {
        let client = omni.client();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let acked = acked.clone();
            let start = next;
            tokio::spawn(async move {
                let mut n = start;
                loop {
                    // Alternate creates of new resources and updates of one counter.
                    if client.apply(&cluster(n)).await.is_err() {
                        return n;
                    }
                    acked.lock().unwrap().push(n);
                    let mut counter = cluster(1_000_000);
                    counter.spec["installimage"] = json!(format!("count-{n}"));
                    if client.apply(&counter).await.is_err() {
                        return n + 1;
                    }
                    acked.lock().unwrap().push(1_000_000 + n);
                    n += 1;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(jitter_ms(round, 150, 700))).await;
        omni.kill9();
        next = writer.await.unwrap() + 1;
        omni.restart().await;

        let acked = acked.lock().unwrap().clone();
        assert!(
            !acked.is_empty(),
            "round {round}: no write was acknowledged before the kill"
        );
        let client = omni.client();
        let stored = client
            .list("Clusters.omni.sidero.dev", "default", None)
            .await
            .unwrap();
        for r in &stored {
            // Torn writes would show as a spec that does not match its id.
            let n: u64 = r.metadata.id.trim_start_matches("crash-").parse().unwrap();
            if n == 1_000_000 {
                continue;
            }
            assert_eq!(
                r.spec["installimage"],
                json!(format!("image-{n}")),
                "torn resource {}",
                r.metadata.id
            );
        }
        for n in acked.iter().filter(|n| **n < 1_000_000) {
            assert!(
                stored.iter().any(|r| r.metadata.id == format!("crash-{n}")),
                "round {round}: acknowledged crash-{n} lost"
            );
        }
        if let Some(last_count) = acked.iter().filter(|n| **n >= 1_000_000).max() {
            let counter = stored
                .iter()
                .find(|r| r.metadata.id == "crash-1000000")
                .expect("counter lost");
            let stored_count: u64 = counter.spec["installimage"]
                .as_str()
                .unwrap()
                .trim_start_matches("count-")
                .parse()
                .unwrap();
            assert!(
                stored_count >= last_count - 1_000_000,
                "counter went back: stored {stored_count}, acknowledged {}",
                last_count - 1_000_000
            );
        }
        acked_total.extend(acked);
    }
    // The admin token made at first start survives too.
    assert!(omni.ctl(&["get", "cluster"]).status.success());
    assert!(
        acked_total.len() > 12,
        "too few writes to mean anything: {}",
        acked_total.len()
    );
}
