//! Skiff's store: a Raft-replicated MVCC key-value store that speaks etcd's v3 API.
//!
//! Start a member with [`server::start`]; use it in-process through the [`Store`] handle, or
//! over the network with any etcd v3 client.

pub mod alarm;
pub mod backup;
pub mod config;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod lease;
pub mod limits;
pub mod maintenance;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod node;
mod peer;
pub mod proto;
pub mod raft;
pub mod read_index;
pub mod server;
pub mod watch;

pub use config::StoreConfig;
pub use error::StoreError;
pub use node::Store;
pub use server::{start, RunningStore, StartError, StopReason};
