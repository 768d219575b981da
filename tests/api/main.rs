//! API integration tests: one binary, one module per service.

mod helpers;

mod e2e;
mod health;
mod reflection;
mod registry;
