use std::future::Future;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is only reserved while probing, so a caller starting a server on it
/// must retry with a new port when the bind fails (the server helpers do).
///
/// # Errors
/// When no port can be bound at all.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(Error::io("bind 127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("local_addr"))?
        .port();
    Ok(port)
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
