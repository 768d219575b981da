//! The example data set of `docs/examples/`: the demo's synthetic data at a small
//! size, written in both import formats, and a DHIS2 mapping for its reports. A test
//! regenerates it and fails when the committed copy differs (`PM_UPDATE_EXAMPLES=1`
//! rewrites it), so the examples always import.

use std::path::Path;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::{
    formats::{self, Content, Entry, RECORD_KINDS},
    synth::{Synth, SynthConfig},
};
use crate::pb::{self, record::Kind};

/// Two partnerships of four members, eight quarters: every kind, a few hundred
/// records.
pub fn config() -> SynthConfig {
    SynthConfig { partnerships: 2, members: 4, responses: 2, ratings: 2, teams: 1, ..SynthConfig::demo() }
}

/// Writes `csv/` and `ndjson/` under `dir`.
pub fn write(dir: &Path, config: SynthConfig) -> anyhow::Result<()> {
    let synth = Synth::new(config);
    // Request ids are the importer's business (one per batch), not the files'.
    let agencies: Vec<Entry> = synth
        .agency_requests()
        .map(|r| Entry::Agency(pb::CreateAgencyRequest { request_id: String::new(), ..r }))
        .collect();
    let partnerships: Vec<Entry> = synth
        .partnership_requests()
        .map(|r| Entry::Partnership(pb::CreatePartnershipRequest { request_id: String::new(), ..r }))
        .collect();
    let memberships: Vec<Entry> = synth
        .membership_requests()
        .map(|r| Entry::Membership(pb::CreateMembershipRequest { request_id: String::new(), ..r }))
        .collect();
    let records: Vec<pb::Record> = synth.records().collect();

    let csv = dir.join("csv");
    std::fs::create_dir_all(&csv).with_context(|| format!("creating {}", csv.display()))?;
    let create = |path: std::path::PathBuf| {
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
    };
    for (content, stem, entries) in [
        (Content::Agencies, "agencies", &agencies),
        (Content::Partnerships, "partnerships", &partnerships),
        (Content::Memberships, "memberships", &memberships),
    ] {
        formats::write_csv(create(csv.join(format!("{stem}.csv")))?, content, entries)?;
    }
    for (i, (stem, _)) in RECORD_KINDS.iter().enumerate() {
        let of_kind: Vec<Entry> =
            records.iter().filter(|r| kind_index(r) == Some(i)).cloned().map(Entry::Record).collect();
        formats::write_csv(create(csv.join(format!("{stem}.csv")))?, Content::Records(Some(i)), &of_kind)?;
    }

    let nd = dir.join("ndjson");
    std::fs::create_dir_all(&nd).with_context(|| format!("creating {}", nd.display()))?;
    let lines = |name: &str, entries: &[Entry]| -> anyhow::Result<String> {
        let descriptor = formats::message(name)?;
        let mut out = String::new();
        for e in entries {
            let line = match e {
                Entry::Agency(m) => formats::ndjson_line(&descriptor, m)?,
                Entry::Partnership(m) => formats::ndjson_line(&descriptor, m)?,
                Entry::Membership(m) => formats::ndjson_line(&descriptor, m)?,
                Entry::Record(m) => formats::ndjson_line(&descriptor, m)?,
            };
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    };
    let write = |file: &str, text: String| {
        let path = nd.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("agencies.ndjson", lines("partnership.v1.CreateAgencyRequest", &agencies)?)?;
    write("partnerships.ndjson", lines("partnership.v1.CreatePartnershipRequest", &partnerships)?)?;
    write("memberships.ndjson", lines("partnership.v1.CreateMembershipRequest", &memberships)?)?;
    let records: Vec<Entry> = records.into_iter().map(Entry::Record).collect();
    write("records.ndjson", lines("partnership.v1.Record", &records)?)?;
    Ok(())
}

fn kind_index(r: &pb::Record) -> Option<usize> {
    Some(match r.kind.as_ref()? {
        Kind::WorkforceReturn(_) => 0,
        Kind::ServiceContract(_) => 1,
        Kind::TeamComposition(_) => 2,
        Kind::SurveyResponse(_) => 3,
        Kind::RelationshipRating(_) => 4,
        Kind::PrinciplesAdoption(_) => 5,
        Kind::PrinciplesEndorsement(_) => 6,
        Kind::RestructuringEvent(_) => 7,
        Kind::BudgetContribution(_) => 8,
    })
}

/// A made-up but well-formed DHIS2 uid for an id: 11 letters and digits, a letter
/// first, stable across runs. Real deployments map to their instance's uids.
pub fn example_uid(prefix: char, id: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let digest = Sha256::digest(id.as_bytes());
    std::iter::once(prefix)
        .chain(digest.iter().take(10).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char))
        .collect()
}

/// The example DHIS2 mapping: every item of `items` to a data element and every
/// partnership of the data set to an organisation unit.
pub fn dhis2_mapping(config: SynthConfig, items: &[String]) -> serde_json::Value {
    let synth = Synth::new(config);
    let elements: serde_json::Map<String, serde_json::Value> =
        items.iter().map(|i| (i.clone(), example_uid('d', i).into())).collect();
    let units: serde_json::Map<String, serde_json::Value> = (0..config.partnerships)
        .map(|p| synth.partnership_id(p))
        .map(|p| (p.clone(), example_uid('o', &p).into()))
        .collect();
    serde_json::json!({ "dataElements": elements, "orgUnits": units })
}
