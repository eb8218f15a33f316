//! The format of a stored etcd backup, as far as both ends need it: how an
//! object is named ([`keys`]) and how the etcd snapshot inside it proves its
//! integrity ([`digest`]).
//!
//! It sits low on the crate ladder so that `omnictl` can verify a download
//! without the etcd client, gRPC and S3 stack `omni-backup` brings (and
//! without `protoc` at build time).

pub mod digest;
pub mod keys;
