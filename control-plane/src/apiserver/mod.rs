//! The API server: Kubernetes REST semantics over the store.

pub mod admission;
pub mod allocator;
pub mod auth;
pub mod bootstrap;
pub mod discovery;
pub mod node_authorizer;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod pods;
pub mod protobuf;
pub mod selectors;
pub mod server;
pub mod shared;
pub mod status;
pub mod table;
pub mod tokens;
