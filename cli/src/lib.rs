//! Skiff's command-line front ends: `skiff` (servers) and `kvctl` (raw store client). The
//! binaries in `src/bin/` only call into this library.

pub mod kvctl;
pub mod node_agent;
pub mod podctl;
pub mod skiff;
