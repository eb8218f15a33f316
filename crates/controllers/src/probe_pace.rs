//! How fast machines are probed: each at most every `interval`, and the
//! whole fleet at most `rate` probes per second.
//!
//! A probe costs a connection, an RPC and sometimes a status write. At ten
//! machines a 10 s period is nothing; at 10,000 it is a thousand probes a
//! second, more than the backups themselves cost. So the fleet gets a budget
//! and each machine's period stretches to `machines / rate` when the
//! budget cannot cover `interval`. A slot clock spaces probes evenly, so
//! a restart or a burst of new machines never probes them all at once.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct ProbePace {
    interval: Duration,
    /// Probes per second, fleet-wide; 0 means no limit.
    rate: f64,
    next_slot: Mutex<Option<Instant>>,
    machines: Mutex<HashSet<String>>,
}

impl ProbePace {
    pub fn new(interval: Duration, rate: f64) -> Self {
        ProbePace {
            interval,
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                0.0
            },
            next_slot: Mutex::default(),
            machines: Mutex::default(),
        }
    }

    /// A machine with an etcd member to probe.
    pub fn track(&self, id: &str) {
        let mut m = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        if !m.contains(id) {
            m.insert(id.to_string());
        }
    }

    /// A machine gone, or without a member.
    pub fn forget(&self, id: &str) {
        let mut m = self.machines.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(id);
    }

    pub fn machines(&self) -> usize {
        self.machines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Time between two probes of one machine.
    pub fn period(&self) -> Duration {
        if self.rate == 0.0 {
            return self.interval;
        }
        let spread = Duration::from_secs_f64(self.machines() as f64 / self.rate);
        self.interval.max(spread)
    }

    /// When the next probe may start; the slot after it is taken.
    pub fn reserve(&self, now: Instant) -> Instant {
        if self.rate == 0.0 {
            return now;
        }
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        let slot = next.map_or(now, |n| n.max(now));
        *next = Some(slot + Duration::from_secs_f64(1.0 / self.rate));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_stretches_with_the_fleet_beyond_the_budget() {
        let pace = ProbePace::new(Duration::from_secs(10), 20.0);
        for i in 0..100 {
            pace.track(&format!("m{i}"));
        }
        pace.track("m0");
        assert_eq!(pace.machines(), 100);
        assert_eq!(
            pace.period(),
            Duration::from_secs(10),
            "100 / 20 = 5 s < 10 s"
        );
        for i in 100..1000 {
            pace.track(&format!("m{i}"));
        }
        assert_eq!(
            pace.period(),
            Duration::from_secs(50),
            "1000 / 20 per second"
        );
        for i in 0..900 {
            pace.forget(&format!("m{i}"));
        }
        assert_eq!(pace.period(), Duration::from_secs(10));
        let unlimited = ProbePace::new(Duration::from_secs(10), 0.0);
        unlimited.track("a");
        assert_eq!(unlimited.period(), Duration::from_secs(10));
    }

    #[test]
    fn slots_are_spaced_by_the_rate_and_never_in_the_past() {
        let pace = ProbePace::new(Duration::from_secs(10), 4.0);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..4).map(|_| pace.reserve(t0) - t0).collect();
        assert_eq!(
            slots,
            [0, 250, 500, 750].map(Duration::from_millis),
            "a burst is spread at 4 per second"
        );
        let later = t0 + Duration::from_secs(5);
        assert_eq!(pace.reserve(later), later, "an idle budget is not saved up");
        let free = ProbePace::new(Duration::from_secs(10), 0.0);
        assert_eq!(free.reserve(t0), t0);
        assert_eq!(free.reserve(t0), t0);
    }
}
