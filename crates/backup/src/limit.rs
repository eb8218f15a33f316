//! Transfer limits: bytes per second written to the store (upload) and read
//! from it (download), for local directories and S3 alike.
//!
//! One limit per direction for the whole process, as the server's
//! `--etcd-backup-upload-limit-mbps` / `--etcd-backup-download-limit-mbps`
//! say: concurrent backups (and downloads) share it. That is why the limits
//! are process-wide and installed once at start ([`set_transfer_limits`])
//! rather than carried by each store.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// Unused time a pacer may catch up on: absorbs the jitter between chunks
/// without letting an idle period turn into a burst.
const CREDIT: Duration = Duration::from_millis(100);

/// Paces a byte stream to a rate: each call reserves the next `n / rate`
/// seconds of a shared virtual clock and waits until they have passed.
#[derive(Debug)]
pub struct Pacer {
    bytes_per_sec: f64,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer at `bytes_per_sec` (must be positive).
    pub fn new(bytes_per_sec: f64) -> Self {
        Self {
            bytes_per_sec,
            next: Mutex::new(None),
        }
    }

    /// The rate, bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes_per_sec
    }

    /// Waits until `n` more bytes may pass.
    pub async fn pace(&self, n: usize) {
        if n == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_sec);
        let until = {
            let now = Instant::now();
            // A poisoned lock only means another task panicked mid-update of
            // an Instant: the value is still usable.
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let floor = now.checked_sub(CREDIT).unwrap_or(now);
            let start = next.map_or(now, |t| t.max(floor));
            let end = start + cost;
            *next = Some(end);
            end
        };
        tokio::time::sleep_until(until).await;
    }
}

/// Megabits per second (as the flags take them) in bytes per second.
pub fn mbps_to_bytes_per_sec(mbps: f64) -> f64 {
    mbps * 1_000_000.0 / 8.0
}

#[derive(Debug, Default, Clone)]
struct Limits {
    upload: Option<Arc<Pacer>>,
    download: Option<Arc<Pacer>>,
}

static LIMITS: RwLock<Limits> = RwLock::new(Limits {
    upload: None,
    download: None,
});

/// Sets the process-wide limits, in bytes per second (`None`: unlimited).
/// Transfers already running keep the pacer they started with.
pub fn set_transfer_limits(upload: Option<f64>, download: Option<f64>) {
    let pacer = |r: Option<f64>| {
        r.filter(|r| r.is_finite() && *r > 0.0)
            .map(|r| Arc::new(Pacer::new(r)))
    };
    let mut l = LIMITS.write().unwrap_or_else(|p| p.into_inner());
    *l = Limits {
        upload: pacer(upload),
        download: pacer(download),
    };
}

fn current() -> Limits {
    LIMITS.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The pacer of writes to the store, if limited.
pub(crate) fn upload() -> Option<Arc<Pacer>> {
    current().upload
}

/// The pacer of reads from the store, if limited.
pub fn download() -> Option<Arc<Pacer>> {
    current().download
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measured against the real clock (not tokio's paused one): what the
    /// flags promise is wall-clock throughput.
    #[tokio::test]
    async fn a_paced_stream_stays_within_ten_percent_of_its_rate() {
        let rate = 4.0 * 1024.0 * 1024.0;
        let pacer = Arc::new(Pacer::new(rate));
        let total = 6 * 1024 * 1024;
        let t = std::time::Instant::now();
        // Two streams share one limit, in uneven chunks.
        let a = {
            let p = pacer.clone();
            tokio::spawn(async move {
                for _ in 0..(total / 2) / 65_536 {
                    p.pace(65_536).await;
                }
            })
        };
        for _ in 0..(total / 2) / 100_000 {
            pacer.pace(100_000).await;
        }
        pacer.pace((total / 2) % 100_000).await;
        a.await.unwrap();
        let achieved = total as f64 / t.elapsed().as_secs_f64();
        assert!(
            achieved <= rate * 1.1 && achieved >= rate * 0.9,
            "achieved {achieved:.0} B/s for a limit of {rate:.0} B/s"
        );
    }

    #[tokio::test]
    async fn idle_time_does_not_become_a_burst() {
        let pacer = Pacer::new(1_000_000.0);
        pacer.pace(1).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let t = std::time::Instant::now();
        pacer.pace(500_000).await;
        // Only CREDIT (100 ms) of the 400 ms idle is made up for.
        assert!(
            t.elapsed() >= Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn mbps_are_megabits() {
        assert_eq!(mbps_to_bytes_per_sec(8.0), 1_000_000.0);
    }
}
