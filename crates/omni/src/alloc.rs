//! glibc malloc tuning for a server that streams large buffers.
//!
//! glibc serves a block above its mmap threshold (128 KiB at start) with its
//! own mmap and unmaps it on free, but each such free raises the threshold
//! to that block's size, up to 32 MiB. After the first backup, the 8 MiB S3
//! part buffers and the 4 MiB ranged-GET parts therefore come from the heap
//! arenas, where freed blocks stay resident and fragment. omni's peak RSS per
//! 1 GiB backup was 71–78 MiB that way; with the threshold pinned at 1 MiB,
//! 44–47 MiB, and 29 MiB between backups (scripts/bench-backup.sh 1024).

/// Pins glibc's mmap threshold, unless `MALLOC_MMAP_THRESHOLD_` says
/// otherwise. Call before any thread is started.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune() {
    use std::ffi::c_int;
    /// `M_MMAP_THRESHOLD` of glibc's `<malloc.h>`.
    const M_MMAP_THRESHOLD: c_int = -3;
    const THRESHOLD: c_int = 1 << 20;
    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return;
    }
    // SAFETY: mallopt takes two integers and changes only malloc's
    // parameters; it is called before the runtime starts any thread.
    let ok = unsafe { mallopt(M_MMAP_THRESHOLD, THRESHOLD) };
    if ok != 1 {
        tracing::warn!(
            threshold = THRESHOLD,
            "mallopt(M_MMAP_THRESHOLD) refused; peak memory may be higher"
        );
    }
}

/// Other allocators need no tuning here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune() {}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4
    }

    /// A large buffer freed is given back, again and again (nextest runs
    /// each test in its own process, so no other test allocates meanwhile).
    #[test]
    fn freed_part_buffers_leave_the_resident_set() {
        super::tune();
        let base = rss_kib();
        let mut worst = 0;
        for _ in 0..4 {
            let buf = vec![1u8; 8 << 20];
            std::hint::black_box(&buf);
            drop(buf);
            worst = worst.max(rss_kib().saturating_sub(base));
        }
        assert!(worst < 4 << 10, "{worst} KiB still resident after free");
    }
}
