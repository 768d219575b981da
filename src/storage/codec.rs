//! How a record's content is stored: one format byte, then the domain record in
//! postcard (compact, varint, field order fixed by the type). Binary and compact
//! because every accepted record is written once and read by every report over it;
//! the API renders contents readably.
//!
//! postcard is not self-describing: a change to a record type needs a new format byte
//! and a decoder for the old one.

use crate::{
    domain::records::Record,
    error::{Error, Result},
};

const FORMAT_V1: u8 = 1;

pub fn encode(record: &Record) -> Result<Vec<u8>> {
    postcard::to_extend(record, vec![FORMAT_V1])
        .map_err(|e| Error::internal(anyhow::anyhow!("encoding a record: {e}")))
}

pub fn decode(bytes: &[u8]) -> Result<Record> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest)
            .map_err(|e| Error::internal(anyhow::anyhow!("stored record content does not decode: {e}"))),
        Some((format, _)) => {
            Err(Error::internal(anyhow::anyhow!("stored record content has unknown format {format}")))
        }
        None => Err(Error::internal(anyhow::anyhow!("stored record content is empty"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Id, Period,
        records::{Stability, SurveyItems, SurveyResponse, WorkforceReturn},
    };

    #[test]
    fn round_trips_and_is_compact() {
        let id = |s: &str| Id::parse(s).unwrap();
        let records = [
            Record::WorkforceReturn(WorkforceReturn {
                partnership: id("p-000123"),
                agency: id("p-000123-council"),
                period: Period::parse("2026Q3").unwrap(),
                headcount_start: 100,
                headcount_end: 110,
                joiners: 15,
                leavers: 5,
                permanent: 90,
                fixed_term: 15,
                agency_staff: 5,
                stability: Some(Stability { staff_over_one_year_service: 80, headcount_one_year_ago: 100 }),
            }),
            Record::SurveyResponse(SurveyResponse {
                partnership: id("pa"),
                period: Period::parse("202607").unwrap(),
                response_id: id("r1"),
                respondent_agency: id("nhs-a"),
                items: SurveyItems { shared_vision: Some(4), morale: Some(2), ..Default::default() },
            }),
        ];
        for r in records {
            let bytes = encode(&r).unwrap();
            assert!(bytes.len() < 64, "{} bytes", bytes.len());
            assert_eq!(decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn rejects_unknown_formats() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
    }
}
