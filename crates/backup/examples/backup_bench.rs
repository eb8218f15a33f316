//! Throughput and memory of `take_backup` to a local store, next to
//! `etcdctl snapshot save`, against a real etcd filled with data.
//!
//! ```text
//! cargo run --release -p omni-backup --example backup_bench -- [MiB] [compressible%]
//! ```
//! Defaults: 200 MiB, 50 % compressible values. Needs the test binaries
//! (scripts/setup-test-deps.sh). Peak RSS is this process's VmHWM, reset just before
//! the measured step, so it covers the in-process pipeline only.

use std::time::Instant;

use omni_backup::{
    download_to_file, generate_identity, parse_identity, parse_recipient, take_backup, BackupStore,
    MemberEndpoint,
};
use omni_testkit::EtcdCluster;

const VALUE: usize = 512 * 1024;

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset peak RSS ({e}); figures include earlier peaks");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total_mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let compressible: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50)
        .min(100);

    let etcd = EtcdCluster::start(1).await?;
    let mut client = etcd.client().await?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let fill_start = Instant::now();
    for i in 0..(total_mib * 1024 * 1024).div_ceil(VALUE) {
        let mut v = Vec::with_capacity(VALUE);
        let random_len = VALUE * (100 - compressible) / 100;
        while v.len() < random_len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            v.extend_from_slice(&state.to_le_bytes());
        }
        v.truncate(random_len);
        let text = format!("{{\"kind\":\"ConfigMap\",\"name\":\"object-{i}\",\"data\":\"");
        while v.len() < VALUE {
            v.extend_from_slice(text.as_bytes());
        }
        v.truncate(VALUE);
        client.put(format!("/bench/{i:08}"), v, None).await?;
    }
    drop(client);
    println!(
        "filled etcd with {total_mib} MiB ({compressible}% compressible values) in {:.1}s",
        fill_start.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let member = etcd.member(0);
    let snap = dir.path().join("etcdctl.db");
    let t = Instant::now();
    etcd.bins().snapshot_save(&member.client_url(), &snap)?;
    let ctl_secs = t.elapsed().as_secs_f64();
    let ctl_bytes = std::fs::metadata(&snap)?.len();
    std::fs::remove_file(&snap)?;

    let store = BackupStore::local(dir.path().join("store"))?;
    let (secret, recipient) = generate_identity();
    let recipient = parse_recipient(&recipient)?;
    let members = [MemberEndpoint {
        name: member.name().to_string(),
        urls: vec![member.client_url()],
        tls: None,
    }];
    reset_peak_rss();
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let out = take_backup(&members, &store, "bench", &recipient, 1).await?;
    let backup_secs = t.elapsed().as_secs_f64();
    let backup_peak = status_kib("VmHWM:").unwrap_or(0);

    let identity = parse_identity(&secret)?;
    reset_peak_rss();
    let t = Instant::now();
    let restored = dir.path().join("restored.db");
    let info = download_to_file(&store, &out.key, &identity, &restored).await?;
    let dl_secs = t.elapsed().as_secs_f64();
    let dl_peak = status_kib("VmHWM:").unwrap_or(0);
    assert_eq!(info.bytes, out.snapshot_bytes);

    println!(
        "snapshot size            {:>9.1} MiB",
        mib(out.snapshot_bytes)
    );
    println!(
        "etcdctl snapshot save    {:>9.2} s  {:>8.1} MiB/s  (plain file, {:.1} MiB)",
        ctl_secs,
        mib(ctl_bytes) / ctl_secs,
        mib(ctl_bytes)
    );
    println!(
        "take_backup (local)      {:>9.2} s  {:>8.1} MiB/s  (zstd+age, stored {:.1} MiB, ratio {:.2})",
        backup_secs,
        mib(out.snapshot_bytes) / backup_secs,
        mib(out.size),
        out.snapshot_bytes as f64 / out.size.max(1) as f64
    );
    println!(
        "download_to_file         {:>9.2} s  {:>8.1} MiB/s",
        dl_secs,
        mib(info.bytes) / dl_secs
    );
    println!(
        "peak RSS: backup {:.1} MiB (RSS before {:.1} MiB), download {:.1} MiB",
        backup_peak as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        dl_peak as f64 / 1024.0
    );
    Ok(())
}
