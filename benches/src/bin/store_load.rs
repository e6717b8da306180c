//! `store-load`: etcd v3 workloads (put, range, txn-put, watch, watch-latency, mixed) against
//! any etcd v3 endpoint, Skiff or etcd itself; see `benches::store_load` and
//! `cargo xtask bench-store`, which runs it against both side by side.

use anyhow::Result;
use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    benches::store_load::main(benches::store_load::Flags::parse()).await
}
