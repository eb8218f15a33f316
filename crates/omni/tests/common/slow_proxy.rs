//! A TCP proxy that slows what clients send, to put a slow network (or a
//! slow S3 server) between omni and a real server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Where the slowness sits.
#[derive(Clone, Copy)]
pub enum Slow {
    /// On the wire: the client can only send as fast as the proxy passes
    /// bytes on, so a client that gives up leaves its request unsent.
    Network,
    /// In the server: the proxy takes the whole request at once and hands it
    /// on slowly, so a request the client gave up on still lands later. This
    /// does not depend on the kernel's socket buffer sizes, which differ
    /// between machines.
    Server,
}

/// Forwards TCP to `target`, sleeping `delay_ms` before each 64 KiB chunk
/// it passes on towards the server.
pub async fn slow_proxy(target: u16, delay_ms: Arc<AtomicU64>) -> u16 {
    slow_proxy_with(target, delay_ms, Slow::Network).await
}

pub async fn slow_proxy_with(target: u16, delay_ms: Arc<AtomicU64>, slow: Slow) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let delay = delay_ms.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let (cr, mut cw) = client.into_split();
                let (mut sr, sw) = server.into_split();
                let up = async move {
                    match slow {
                        Slow::Network => {
                            forward_slowly(cr, sw, delay).await;
                            None
                        }
                        Slow::Server => forward_buffered(cr, sw, delay).await,
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                // A server half-closed by us may drop the request it is
                // still handling: keep its write side open until it answers.
                let (_server_write, ()) = tokio::join!(up, down);
            });
        }
    });
    port
}

async fn forward_slowly(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
    }
}

async fn forward_buffered(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    delay: Arc<AtomicU64>,
) -> Option<OwnedWriteHalf> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        let mut to = to;
        while let Some(chunk) = rx.recv().await {
            tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
            if to.write_all(&chunk).await.is_err() {
                return None;
            }
        }
        Some(to)
    };
    tokio::join!(reader, writer).1
}
