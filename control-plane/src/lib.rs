//! Control plane: object model, API server, scheduler, controllers, leader election, hollow
//! nodes and the clients they share.

pub mod apiserver;
pub mod client;
pub mod controllers;
pub mod events;
pub mod hollow;
pub mod leader;
pub mod limits;
pub mod master;
pub mod pki;
pub mod quantity;
pub mod resources;
pub mod scheduler;
pub mod storage;
