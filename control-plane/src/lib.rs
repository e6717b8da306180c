//! Control plane: object model, API server, scheduler, controllers and client (issue 5 on).

pub mod apiserver;
pub mod limits;
pub mod pki;
pub mod quantity;
pub mod resources;
pub mod storage;
