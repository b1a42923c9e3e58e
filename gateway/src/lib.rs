//! A Pyralog node's front door: the gRPC `Producer`, `Consumer` and `Admin` services over the
//! hot and cold tiers, with routing to the right partition and the read rules (high watermark,
//! long-poll, offset and timestamp lookup).
//!
//! Layers: [`node::Node`] holds the domain logic and owns the partition logs and background
//! tasks; `services` adapts gRPC messages to it; [`server::serve`] wires the services, health
//! and reflection into a tonic server with graceful shutdown.

pub mod access;
pub mod catalog;
mod cluster;
mod cold;
pub mod config;
mod copy_throttle;
pub mod error;
mod error_count;
mod fetch;
mod group_service;
pub mod metadata;
pub mod metrics;
pub mod node;
mod partition;
mod produce_stream;
mod replica_chain;
mod security_service;
pub mod server;
mod services;
mod stream_limits;
mod trash;

pub use config::{ClusterSettings, ColdTierSettings, NodeConfig};
pub use error::GatewayError;
pub use node::{Node, NodeComponents, NodeError};
pub use pyralog_cold_tier::ObjectStoreConfig;
pub use pyralog_security as security;
pub use server::{serve, Listeners};
