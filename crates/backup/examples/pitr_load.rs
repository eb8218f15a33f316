//! Load for `scripts/bench-pitr.sh` (not a test): puts of 1 KiB values at
//! a steady rate to one etcd endpoint, spread over 1,000 keys, for a given
//! time; prints the number of writes and the last revision.
//!
//!   pitr_load ENDPOINT WRITES_PER_SECOND SECONDS

use std::time::{Duration, Instant};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, rate, secs] = &args[..] else {
        return Err("usage: pitr_load ENDPOINT WRITES_PER_SECOND SECONDS".into());
    };
    let rate: u64 = rate.parse()?;
    let secs: u64 = secs.parse()?;
    let mut client = etcd_client::Client::connect([endpoint.as_str()], None).await?;
    let value: Vec<u8> = (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect();
    let start = Instant::now();
    let total = rate * secs;
    let mut last = 0;
    // Writes go out in small batches of concurrent puts so that 1,000/s
    // does not depend on one round trip per write.
    let batch = (rate / 100).max(1);
    let mut n = 0u64;
    while n < total {
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let puts = (0..batch.min(total - n)).map(|i| {
            let mut c = client.clone();
            let key = format!("/bench/{:04}", (n + i) % 1000);
            let mut v = value.clone();
            v[..8].copy_from_slice(&(n + i).to_le_bytes());
            async move { c.put(key, v, None).await }
        });
        for r in futures::future::join_all(puts).await {
            last = last.max(r?.header().map(|h| h.revision()).unwrap_or(0));
        }
        n += batch;
    }
    let _ = &mut client;
    println!(
        "writes={total} last_revision={last} seconds={:.1}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
