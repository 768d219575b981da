//! Generated protobuf and gRPC code for `partnership.v1`; nothing else lives here.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("partnership.v1");

/// Encoded `FileDescriptorSet` of the contract and its imports, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("partnership_descriptor");
