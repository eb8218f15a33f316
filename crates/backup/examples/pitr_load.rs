//! Load for `scripts/bench-pitr.sh` (not a test): puts of 1 KiB values at
//! a steady rate to one etcd endpoint, spread over 1,000 keys, for a given
//! time; prints the number of writes, the last revision and when it was
//! acknowledged. A put failing (the cluster destroyed) ends the load early.
//!
//!   pitr_load ENDPOINT WRITES_PER_SECOND SECONDS

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    // When the last acknowledged write was acknowledged (unix ms): what a
    // destroyed cluster's loss is measured from.
    let mut last_ack_ms = 0u128;
    let mut error = None;
    // Writes go out in small batches of concurrent puts so that 1,000/s
    // does not depend on one round trip per write.
    let batch = (rate / 100).max(1);
    let mut n = 0u64;
    'load: while n < total {
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let puts = (0..batch.min(total - n)).map(|i| {
            let mut c = client.clone();
            let key = format!("/bench/{:04}", (n + i) % 1000);
            let mut v = value.clone();
            v[..8].copy_from_slice(&(n + i).to_le_bytes());
            async move {
                let r = c.put(key, v, None).await;
                (r, SystemTime::now())
            }
        });
        for (r, at) in futures::future::join_all(puts).await {
            match r {
                Ok(resp) => {
                    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                    if rev > last {
                        last = rev;
                        last_ack_ms = at.duration_since(UNIX_EPOCH)?.as_millis();
                    }
                }
                // The cluster is gone (the bench destroys it): report
                // what was acknowledged until then.
                Err(e) => {
                    error = Some(e.to_string());
                    break 'load;
                }
            }
        }
        n += batch;
    }
    let _ = &mut client;
    println!(
        "writes={n} last_revision={last} last_ack_ms={last_ack_ms} seconds={:.1}{}",
        start.elapsed().as_secs_f64(),
        error
            .map(|e| format!(" stopped_by={e:?}"))
            .unwrap_or_default()
    );
    Ok(())
}
