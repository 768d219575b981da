//! Decoding record batches within bounds. A `SubmitRecordsRequest` or
//! `IngestRecordsRequest` is walked on the wire first: records are counted, and each
//! record is decoded only while the batch stays within the limits of
//! [`BatchShape`] (10,000 records, 1,000 entries per team composition, 100,000 team
//! entries in all). A 64 MiB message of empty records therefore costs a scan of its
//! bytes, not millions of decoded records; the batch is then rejected with the same
//! answer as any batch over the limits (and a stream goes on).

use std::marker::PhantomData;

use bytes::Buf;
use prost::{
    Message,
    encoding::{WireType, decode_key, decode_varint},
};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

use crate::{
    domain::check::{BatchShape, MAX_BATCH_RECORDS, MAX_BATCH_TEAM_ENTRIES},
    pb,
};

/// A batch as received: its request id, the records decoded (all of them when the
/// batch is within its limits), and its shape as counted on the wire.
#[derive(Debug, Default)]
pub struct IncomingBatch {
    pub request_id: String,
    pub validate_only: bool,
    pub records: Vec<pb::Record>,
    pub shape: BatchShape,
}

/// `SubmitRecordsRequest` and `IngestRecordsRequest` share these field numbers.
const REQUEST_ID: u32 = 1;
const RECORDS: u32 = 2;
const VALIDATE_ONLY: u32 = 3;
/// `Record.team_composition`.
const TEAM_COMPOSITION: u32 = 3;
/// `TeamComposition.entries`.
const ENTRIES: u32 = 5;

/// Why a batch's bytes are not a valid message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
}

fn malformed(what: &'static str) -> WireError {
    WireError::Malformed(what)
}

/// The bytes of a length-delimited field.
fn length_delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let len = usize::try_from(decode_varint(buf)?).map_err(|_| malformed("field length overflows"))?;
    if len > buf.len() {
        return Err(malformed("field runs past the end of the message"));
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

/// Skips a field of the given wire type.
fn skip(wire_type: WireType, buf: &mut &[u8]) -> Result<(), WireError> {
    let n = match wire_type {
        WireType::Varint => {
            decode_varint(buf)?;
            0
        }
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => {
            length_delimited(buf)?;
            0
        }
        // Groups are not part of proto3 and never appear in these messages.
        WireType::StartGroup | WireType::EndGroup => return Err(malformed("unexpected group")),
    };
    if n > buf.len() {
        return Err(malformed("field runs past the end of the message"));
    }
    buf.advance(n);
    Ok(())
}

/// A field's value as `fields` hands it over.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Bytes(&'a [u8]),
    Varint(u64),
    /// A fixed-width value, skipped.
    Fixed,
}

/// Visits each field of a message: its number, wire type and, for length-delimited
/// and varint fields, its value (others are skipped).
fn fields<'a>(
    mut buf: &'a [u8],
    mut visit: impl FnMut(u32, WireType, Value<'a>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let value = match wire_type {
            WireType::LengthDelimited => Value::Bytes(length_delimited(&mut buf)?),
            WireType::Varint => Value::Varint(decode_varint(&mut buf)?),
            _ => {
                skip(wire_type, &mut buf)?;
                Value::Fixed
            }
        };
        visit(tag, wire_type, value)?;
    }
    Ok(())
}

/// How many team entries a record's bytes hold (all occurrences of its
/// `team_composition` merge, as protobuf merges them).
fn team_entries(record: &[u8]) -> Result<usize, WireError> {
    let mut n = 0;
    fields(record, |tag, _, value| {
        if let (TEAM_COMPOSITION, Value::Bytes(bytes)) = (tag, value) {
            fields(bytes, |tag, wt, _| {
                if tag == ENTRIES && wt == WireType::LengthDelimited {
                    n += 1;
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(n)
}

impl IncomingBatch {
    /// Decodes a batch, records only while it stays within its limits.
    pub fn decode(buf: &[u8]) -> Result<IncomingBatch, WireError> {
        let mut batch = IncomingBatch::default();
        let mut request_id: &[u8] = &[];
        fields(buf, |tag, _, value| {
            match (tag, value) {
                (REQUEST_ID, Value::Bytes(bytes)) => request_id = bytes,
                // Any non-zero varint is true, as protobuf decodes a bool.
                (VALIDATE_ONLY, Value::Varint(v)) => batch.validate_only = v != 0,
                (RECORDS, Value::Bytes(bytes)) => {
                    let index = batch.shape.records;
                    batch.shape.records += 1;
                    if index >= MAX_BATCH_RECORDS {
                        return Ok(());
                    }
                    let entries = team_entries(bytes)?;
                    batch.shape.count_team(index, entries);
                    // Past a limit nothing more is decoded: the batch will be refused.
                    if batch.shape.oversized_teams.is_empty()
                        && batch.shape.team_entries <= MAX_BATCH_TEAM_ENTRIES
                    {
                        batch.records.push(pb::Record::decode(bytes)?);
                    }
                }
                (REQUEST_ID | RECORDS | VALIDATE_ONLY, _) => return Err(malformed("invalid wire type")),
                _ => {}
            }
            Ok(())
        })?;
        batch.request_id =
            String::from_utf8(request_id.to_vec()).map_err(|_| malformed("request_id is not UTF-8"))?;
        Ok(batch)
    }
}

/// The codec of the batch RPCs: bounded decoding of batches, prost encoding of `E`.
#[derive(Debug)]
pub struct BatchCodec<E>(PhantomData<E>);

impl<E> Default for BatchCodec<E> {
    fn default() -> Self {
        BatchCodec(PhantomData)
    }
}

#[derive(Debug, Default)]
pub struct BatchDecoder;

impl Decoder for BatchDecoder {
    type Item = IncomingBatch;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<IncomingBatch>, Status> {
        let len = src.remaining();
        // A DecodeBuf holds one whole message, contiguous.
        let batch = IncomingBatch::decode(&src.chunk()[..len])
            .map_err(|e| Status::internal(format!("failed to decode the batch: {e}")))?;
        src.advance(len);
        Ok(Some(batch))
    }
}

impl<E: Message + Send + 'static> Codec for BatchCodec<E> {
    type Encode = E;
    type Decode = IncomingBatch;
    type Encoder = ProstEncoder<E>;
    type Decoder = BatchDecoder;

    fn encoder(&mut self) -> ProstEncoder<E> {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> BatchDecoder {
        BatchDecoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::check::{MAX_TEAM_ENTRIES, check_batch_shape};

    fn team(entries: usize) -> pb::Record {
        pb::Record {
            kind: Some(pb::record::Kind::TeamComposition(pb::TeamComposition {
                entries: vec![pb::TeamEntry::default(); entries],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_batch_within_limits_decodes_as_prost_would() {
        let request = pb::SubmitRecordsRequest {
            request_id: "r-1".into(),
            records: vec![team(3), pb::Record::default(), team(1)],
            validate_only: true,
        };
        let batch = IncomingBatch::decode(&request.encode_to_vec()).unwrap();
        assert_eq!(batch.request_id, "r-1");
        assert!(batch.validate_only);
        let plain = pb::SubmitRecordsRequest { validate_only: false, ..request.clone() };
        assert!(!IncomingBatch::decode(&plain.encode_to_vec()).unwrap().validate_only);
        assert_eq!(batch.records, request.records);
        assert_eq!(batch.shape, BatchShape { records: 3, oversized_teams: vec![], team_entries: 4 });
        assert!(batch.shape.is_within_limits());
    }

    #[test]
    fn records_past_the_limit_are_counted_not_decoded() {
        // 64 MiB of empty records: each is two bytes on the wire.
        let empty = pb::Record::default().encode_length_delimited_to_vec();
        let mut wire = Vec::new();
        for _ in 0..(64 << 20) / 2 {
            prost::encoding::encode_key(RECORDS, WireType::LengthDelimited, &mut wire);
            wire.extend_from_slice(&empty);
        }
        let batch = IncomingBatch::decode(&wire).unwrap();
        assert_eq!(batch.shape.records, 32 << 20);
        assert_eq!(batch.records.len(), MAX_BATCH_RECORDS, "only the first 10,000 were decoded");
        let v = check_batch_shape(&batch.shape);
        assert_eq!(v[0].field, "records");
        assert!(v[0].description.contains("at most 10000 records"), "{}", v[0].description);
    }

    #[test]
    fn oversized_teams_and_team_totals_stop_decoding() {
        let request = pb::SubmitRecordsRequest {
            request_id: String::new(),
            records: vec![team(2), team(MAX_TEAM_ENTRIES + 1), team(2)],
            validate_only: false,
        };
        let batch = IncomingBatch::decode(&request.encode_to_vec()).unwrap();
        assert_eq!(batch.shape.oversized_teams, vec![(1, MAX_TEAM_ENTRIES + 1)]);
        assert_eq!(batch.records.len(), 1);
        let v = check_batch_shape(&batch.shape);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "records[1].team_composition.entries");

        let many = pb::SubmitRecordsRequest {
            request_id: String::new(),
            records: (0..101).map(|_| team(MAX_TEAM_ENTRIES)).collect(),
            validate_only: false,
        };
        let batch = IncomingBatch::decode(&many.encode_to_vec()).unwrap();
        assert_eq!(batch.shape.team_entries, 101 * MAX_TEAM_ENTRIES);
        assert_eq!(batch.records.len(), 100, "decoding stops once the batch total is exceeded");
        assert_eq!(check_batch_shape(&batch.shape)[0].field, "records");
    }

    #[test]
    fn malformed_bytes_are_a_decode_error() {
        // A record as a varint, validate_only as bytes, a truncated field, a runaway
        // varint, a request id that is not UTF-8.
        for bad in
            [&[0x10, 0x01][..], &[0x1a, 0x00], &[0x12, 0x05, 0x01], &[0xff; 11], &[0x0a, 0x02, 0xff, 0xfe]]
        {
            assert!(IncomingBatch::decode(bad).is_err(), "{bad:?}");
        }
    }
}
