use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is only reserved while probing, so a caller starting a server on it
/// must retry with a new port when the bind fails (the server helpers do).
///
/// Ports come from below the kernel's ephemeral range when it leaves room:
/// a stopped etcd member restarts on its old ports, and an ephemeral port
/// freed by a stop is soon handed to some other test's outgoing connection
/// or `bind(0)`, which made restarts fail with "address already in use".
///
/// # Errors
/// When no port can be bound at all.
pub fn free_port() -> Result<u16> {
    let (low, high) = (10_000u32, ephemeral_start().unwrap_or(0));
    if high > low + 1_000 {
        let span = high - low;
        let mut next = low + seed() % span;
        for _ in 0..200 {
            if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, next as u16)) {
                drop(l);
                return Ok(next as u16);
            }
            next = low + (next - low + 7_919) % span;
        }
    }
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("local_addr"))?
        .port();
    Ok(port)
}

/// The first port the kernel hands out for `bind(0)` and outgoing
/// connections (Linux only; elsewhere the plain `bind(0)` is used).
fn ephemeral_start() -> Option<u32> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// Differs between calls and between test processes.
fn seed() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let calls = CALLS.fetch_add(1, Ordering::Relaxed);
    nanos
        .wrapping_mul(2_654_435_761)
        .wrapping_add(std::process::id().wrapping_mul(40_503))
        .wrapping_add(calls.wrapping_mul(7_919))
}

/// Eventual assertion: polls `cond` until it returns `true` or `timeout` passes.
///
/// Polls quickly at first (10 ms) and backs off to 200 ms.
///
/// # Errors
/// [`Error::Timeout`] when the condition never held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(10);
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(timeout));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}
