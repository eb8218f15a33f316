//! CPU of one member probe, gRPC channel against the JSON gateway, on a
//! real etcd, plain and with TLS client certificates.
//!
//! ```text
//! cargo run --release -p omni-backup --example probe_bench -- [probes] [per second] [only]
//! ```
//! Defaults: 1,000 probes of each kind at 100 per second (spaced, as the
//! controller spaces them, so no probe finds a warm connection); `only`
//! runs the kinds whose label contains it (for `perf record`). Needs the
//! test binaries (scripts/setup-test-deps.sh). CPU is this process's
//! (`/proc/self/stat`), so etcd's share is left out; the empty loop's is
//! printed first and included in every figure.

use std::time::Duration;

use omni_backup::probe::{grpc_status, MemberStatus, Prober};
use omni_backup::{MemberEndpoint, SourceError, TlsMaterial};
use omni_testkit::EtcdCluster;

/// User + system CPU of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn measure<F, Fut>(what: &str, n: usize, rate: f64, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<MemberStatus, SourceError>>,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let c0 = cpu_seconds();
    let mut failed = 0;
    for _ in 0..n {
        tick.tick().await;
        if probe().await.is_err() {
            failed += 1;
        }
    }
    let cpu = cpu_seconds() - c0;
    println!(
        "{what}: {n} probes, {:.3} ms CPU per probe, {failed} failed",
        cpu * 1000.0 / n as f64
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let rate: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100.0);
    let only = args.next().unwrap_or_default();
    let timeout = Duration::from_secs(3);
    let plain = EtcdCluster::start(1).await?;
    let tls = EtcdCluster::start_tls(1).await?;
    let pem = tls.tls().ok_or("no TLS material")?;
    let members = [
        (
            "plain",
            MemberEndpoint {
                name: "plain".into(),
                urls: plain.client_urls(),
                tls: None,
            },
        ),
        (
            "TLS + client cert",
            MemberEndpoint {
                name: "tls".into(),
                urls: tls.client_urls(),
                tls: Some(TlsMaterial {
                    ca_pem: pem.ca_pem.clone(),
                    cert_pem: Some(pem.client_cert_pem.clone()),
                    key_pem: Some(pem.client_key_pem.clone()),
                }),
            },
        ),
    ];
    let prober = Prober::new(timeout);
    measure("empty loop", n, rate, || async {
        Ok(MemberStatus::default())
    })
    .await;
    for (kind, m) in &members {
        // Warm-up: first connections, lazy statics.
        grpc_status(m, timeout).await?;
        prober.status(m).await?;
        let label = format!("{kind}, gRPC channel per probe");
        if label.contains(&only) {
            measure(&label, n, rate, || grpc_status(m, timeout)).await;
        }
        let label = format!("{kind}, JSON gateway");
        if label.contains(&only) {
            measure(&label, n, rate, || prober.status(m)).await;
        }
    }
    Ok(())
}
