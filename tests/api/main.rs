//! API integration tests: one binary, one module per service.

mod fixtures;
mod helpers;

mod e2e;
mod health;
mod reflection;
mod registry;
mod reports;
mod submission;
mod worked;
