//! Real servers for integration tests: etcd (1 or 3 members) and an S3 endpoint
//! (`s3s-fs`), each bound to `127.0.0.1` on free ports, with its data in a temp
//! directory that is removed (and the process killed) on drop.
//!
//! Binaries are found through `OMNI_TEST_ETCD_BIN`, `OMNI_TEST_ETCDCTL_BIN`,
//! `OMNI_TEST_ETCDUTL_BIN` and `OMNI_TEST_S3S_BIN`, then in the cache that
//! `scripts/setup-test-deps.sh` fills (`$OMNI_CACHE_DIR` or `~/.cache/omni-rs`),
//! then on `PATH`.

mod bins;
mod error;
mod etcd;
mod process;
mod s3;
mod tls;
mod wait;

pub use bins::{etcd_bins, s3s_bin, EtcdBins};
pub use error::{Error, Result};
pub use etcd::{EtcdCluster, EtcdMember};
pub use s3::S3Server;
pub use tls::{write_server_certs, TlsPem};
pub use wait::{free_port, wait_until};

/// Incompressible bytes (xorshift from `seed`): stored backups as large as
/// the data, and ranges that differ from each other.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
