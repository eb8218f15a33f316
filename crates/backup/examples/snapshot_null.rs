//! etcd's snapshot stream read and thrown away: the ceiling etcd sets for any
//! backup (path C of `scripts/bench-backup.sh`). `etcdctl snapshot save` cannot
//! write to /dev/null (it renames a `.part` file into place), hence this.
//!
//! ```text
//! cargo run --release -p omni-backup --example snapshot_null -- http://127.0.0.1:2379
//! ```
//! Prints `<bytes> <seconds>` on stdout.

use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: snapshot_null <client URL>")?;
    let t = Instant::now();
    let mut client = etcd_client::Client::connect([url], None).await?;
    let mut stream = client.snapshot().await?;
    let mut bytes = 0u64;
    while let Some(msg) = stream.message().await? {
        bytes += msg.blob().len() as u64;
    }
    println!("{bytes} {:.3}", t.elapsed().as_secs_f64());
    Ok(())
}
