//! Integration tests of the backup pipeline against real etcd and a real S3 server
//! (s3s-fs), started by omni-testkit on loopback ports.

mod common;
mod delta;
mod faults;
mod journal;
mod listing;
mod local;
mod probe;
mod ranged;
mod s3;
mod tls;
