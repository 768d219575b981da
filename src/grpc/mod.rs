//! The gRPC adapter: the only code that touches prost types. It parses requests into
//! domain values (collecting every bad field), calls storage and the engine, and maps
//! results back to protobuf and errors to statuses.

pub mod authz;
pub mod batch_codec;
pub mod connections;
pub mod edge;
pub mod errors;
pub mod fields;
pub mod layers;
pub mod pagination;
pub mod records;
pub mod registry;
pub mod report_cache;
pub mod reports;
pub mod submission;
