//! Crash accounting: how often each controller panicked, and whether one
//! keeps doing so (then the server is not ready).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When repeated crashes make the runtime unhealthy.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// Crashes of one controller within `window` that make it unhealthy.
    pub threshold: usize,
    pub window: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            threshold: 3,
            window: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct LoopState {
    crashes: u64,
    recent: VecDeque<Instant>,
    reconciles: u64,
    relists: u64,
}

/// What one controller has done since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoopCounts {
    pub crashes: u64,
    /// Reconciles run (each key counted per run).
    pub reconciles: u64,
    /// Whole-world passes: at start, after a watch fell behind, on a poke
    /// of every key. Growing with the fleet's event rate is the sign of a
    /// feed too small for it.
    pub relists: u64,
}

/// Shared between the runtime (which records crashes) and the server
/// (which reports them in `/metrics` and `/readyz`).
#[derive(Default)]
pub struct Health {
    settings: HealthSettings,
    loops: Mutex<BTreeMap<&'static str, LoopState>>,
}

impl Health {
    pub fn new(settings: HealthSettings) -> Self {
        Health {
            settings,
            loops: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, LoopState>> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self, name: &'static str) {
        self.lock().entry(name).or_default();
    }

    pub(crate) fn crashed(&self, name: &'static str) {
        let now = Instant::now();
        let mut all = self.lock();
        let c = all.entry(name).or_default();
        c.crashes += 1;
        c.recent.push_back(now);
        while c.recent.len() > self.settings.threshold.max(1) {
            c.recent.pop_front();
        }
    }

    pub(crate) fn reconciled(&self, name: &'static str) {
        self.lock().entry(name).or_default().reconciles += 1;
    }

    pub(crate) fn relisted(&self, name: &'static str) {
        self.lock().entry(name).or_default().relists += 1;
    }

    /// Every registered controller's counters.
    pub fn loop_counts(&self) -> Vec<(&'static str, LoopCounts)> {
        self.lock()
            .iter()
            .map(|(n, c)| {
                let counts = LoopCounts {
                    crashes: c.crashes,
                    reconciles: c.reconciles,
                    relists: c.relists,
                };
                (*n, counts)
            })
            .collect()
    }

    /// Controllers that crashed `threshold` times within the window.
    pub fn failing(&self) -> Vec<&'static str> {
        let now = Instant::now();
        let threshold = self.settings.threshold.max(1);
        self.lock()
            .iter()
            .filter(|(_, c)| {
                c.recent.len() >= threshold
                    && c.recent
                        .front()
                        .is_some_and(|t| now.duration_since(*t) <= self.settings.window)
            })
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn healthy(&self) -> bool {
        self.failing().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_crashes_within_the_window_make_it_unhealthy() {
        let h = Health::new(HealthSettings {
            threshold: 2,
            window: Duration::from_secs(60),
        });
        h.register("A");
        h.register("B");
        h.crashed("A");
        assert!(h.healthy(), "one crash is not a habit");
        h.crashed("A");
        assert_eq!(h.failing(), ["A"]);
        let crashes: Vec<_> = h
            .loop_counts()
            .iter()
            .map(|(n, c)| (*n, c.crashes))
            .collect();
        assert_eq!(crashes, [("A", 2), ("B", 0)]);
        let quick = Health::new(HealthSettings {
            threshold: 2,
            window: Duration::ZERO,
        });
        quick.crashed("A");
        quick.crashed("A");
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            quick.healthy(),
            "crashes older than the window are forgiven"
        );
    }
}
