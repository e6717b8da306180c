//! Load generators and comparison runs for the store (issue 8 on).
//!
//! `store_load` is the library behind the `store-load` binary (etcd v3 workloads against Skiff
//! or etcd); `limits` holds every bound the generators keep.

pub mod limits;
pub mod store_load;
