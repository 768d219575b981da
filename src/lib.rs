//! Partnership Metrics: a gRPC service computing partnership-sustainability
//! indicators. See ARCHITECTURE.md for the map.

pub mod auth;
pub mod cli;
pub mod configuration;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod indicators;
pub mod pb;
pub mod startup;
pub mod storage;
pub mod telemetry;
