//! Object storage for the API server: the store backend (embedded member or etcd endpoints)
//! and the per-resource watch caches fed from it.

pub mod backend;
pub mod cache;

pub use backend::{Backend, BackendError, MultiSwap, StoredKv, Swap};
pub use cache::{CacheError, CacheEvent, EventType, WatchCache};
