//! Backups in use: a reader (a restore drill) leases the object key it
//! reads, and retention leaves leased keys alone until the lease is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Shared set of leased object keys. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct BackupLeases(Arc<Mutex<HashMap<String, usize>>>);

impl BackupLeases {
    /// Leases `key` until the returned guard is dropped.
    pub fn lease(&self, key: &str) -> Lease {
        *self.map().entry(key.to_string()).or_insert(0) += 1;
        Lease {
            leases: self.clone(),
            key: key.to_string(),
        }
    }

    /// Whether anyone holds a lease on `key`.
    pub fn is_leased(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A held lease; dropping it releases the key.
#[derive(Debug)]
pub struct Lease {
    leases: BackupLeases,
    key: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut map = self.leases.map();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_nest_and_release_on_drop() {
        let leases = BackupLeases::default();
        let a = leases.lease("k");
        let b = leases.lease("k");
        assert!(leases.is_leased("k") && !leases.is_leased("other"));
        drop(a);
        assert!(leases.is_leased("k"));
        drop(b);
        assert!(!leases.is_leased("k"));
    }
}
