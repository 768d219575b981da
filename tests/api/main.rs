//! API integration tests: one binary, one module per service.

#[macro_use]
mod helpers;
mod fixtures;

mod auth;
mod data_tools;
mod durability;
mod e2e;
mod edge;
mod health;
mod limits;
mod python_client;
mod reflection;
mod registry;
mod replicas;
mod reports;
mod schema;
mod submission;
mod telemetry;
mod worked;
