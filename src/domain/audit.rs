//! The audit log: one entry per accepted write (who, when, which method and request
//! id, which keys), each holding the hash of the one before, so that an entry edited
//! or deleted after the fact breaks the chain. Entries carry no record contents and no
//! personal data. Pure: storage appends entries in the write's own transaction and
//! `audit verify` recomputes the chain with [`verify`].

use sha2::{Digest, Sha256};

use super::{Id, Idempotency, Timestamp, access::Actor};

/// The hash before the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// Everything a write needs to know beyond its data: who makes it, through which
/// method, under which request id, and whose records it may replace.
#[derive(Debug, Clone)]
pub struct WriteContext {
    pub actor: Actor,
    /// The RPC, e.g. `CreateAgency` or `IngestRecords`.
    pub method: &'static str,
    pub idem: Option<Idempotency>,
    /// When set, a batch may only replace stored records this agency reported (a
    /// submitter may not overwrite another agency's record under a shared key).
    pub owner: Option<Id>,
    /// Make every check and compute the answer, then roll back (AIP-163): no record,
    /// request id, audit entry or data version is written.
    pub validate_only: bool,
}

impl WriteContext {
    pub fn new(actor: Actor, method: &'static str, idem: Option<Idempotency>) -> WriteContext {
        WriteContext { actor, method, idem, owner: None, validate_only: false }
    }

    /// The same write, only checked when `validate_only` (AIP-163).
    pub fn validating(self, validate_only: bool) -> WriteContext {
        WriteContext { validate_only, ..self }
    }

    /// The entry this write adds to the log, once its sequence number, time and the
    /// previous hash are known.
    pub fn entry(&self, seq: i64, time: Timestamp, keys: Vec<String>, prev_hash: [u8; 32]) -> AuditEntry {
        AuditEntry::new(
            seq,
            time,
            self.actor.client_id.clone(),
            self.actor.agency.as_ref().map(Id::to_string),
            self.method.to_string(),
            self.idem.as_ref().map(|i| i.request_id.as_str().to_string()),
            keys,
            prev_hash,
        )
    }
}

/// One entry of the audit log, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: i64,
    pub time: Timestamp,
    pub client_id: String,
    pub agency: Option<String>,
    pub method: String,
    pub request_id: Option<String>,
    /// The keys written: record keys, or registry resource names.
    pub keys: Vec<String>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Appends a field to the hash input with its length first, so that no two
/// different entries hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn optional(h: &mut Sha256, s: &Option<String>) {
    match s {
        None => h.update([0]),
        Some(s) => {
            h.update([1]);
            field(h, s.as_bytes());
        }
    }
}

impl AuditEntry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: i64,
        time: Timestamp,
        client_id: String,
        agency: Option<String>,
        method: String,
        request_id: Option<String>,
        keys: Vec<String>,
        prev_hash: [u8; 32],
    ) -> AuditEntry {
        let mut entry =
            AuditEntry { seq, time, client_id, agency, method, request_id, keys, prev_hash, hash: [0; 32] };
        entry.hash = entry.compute_hash();
        entry
    }

    /// SHA-256 over every field but the hash itself, the previous hash included.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"partnership-metrics audit v1\0");
        h.update(self.seq.to_be_bytes());
        h.update(self.time.0.to_be_bytes());
        field(&mut h, self.client_id.as_bytes());
        optional(&mut h, &self.agency);
        field(&mut h, self.method.as_bytes());
        optional(&mut h, &self.request_id);
        h.update((self.keys.len() as u64).to_be_bytes());
        for k in &self.keys {
            field(&mut h, k.as_bytes());
        }
        h.update(self.prev_hash);
        h.finalize().into()
    }

    /// The keys as stored: one per line (no key contains a line break).
    pub fn keys_text(&self) -> String {
        self.keys.join("\n")
    }

    pub fn keys_from_text(text: &str) -> Vec<String> {
        if text.is_empty() { Vec::new() } else { text.split('\n').map(str::to_string).collect() }
    }
}

/// Why a chain does not verify: the first entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("audit entry {seq} is missing")]
    Missing { seq: i64 },
    #[error("audit entry {seq} was altered: its hash does not match its contents")]
    Altered { seq: i64 },
    #[error("audit entry {seq} was altered or replaced: it does not follow entry {}", seq - 1)]
    Unlinked { seq: i64 },
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub entries: i64,
    /// The hash of the last entry: record it elsewhere to detect a rewritten chain.
    pub head: [u8; 32],
}

/// Recomputes a chain entry by entry, in `seq` order, so a long log needs no more
/// memory than one page of it.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev: [u8; 32],
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { expected_seq: 1, prev: GENESIS }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), ChainBreak> {
        if e.seq != self.expected_seq {
            return Err(ChainBreak::Missing { seq: self.expected_seq });
        }
        if e.compute_hash() != e.hash {
            return Err(ChainBreak::Altered { seq: e.seq });
        }
        if e.prev_hash != self.prev {
            return Err(ChainBreak::Unlinked { seq: e.seq });
        }
        self.prev = e.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// Checks that the chain ends at the head the database recorded (`head_seq`,
    /// `head_hash`), so that deleting the newest entries is caught too.
    pub fn finish(self, head_seq: i64, head_hash: [u8; 32]) -> Result<ChainSummary, ChainBreak> {
        let last = self.expected_seq - 1;
        if last < head_seq {
            return Err(ChainBreak::Missing { seq: last + 1 });
        }
        if last > head_seq || self.prev != head_hash {
            return Err(ChainBreak::Unlinked { seq: last });
        }
        Ok(ChainSummary { entries: last, head: self.prev })
    }
}

/// [`ChainVerifier`] over a whole chain at once.
pub fn verify(
    entries: impl IntoIterator<Item = AuditEntry>,
    head_seq: i64,
    head_hash: [u8; 32],
) -> Result<ChainSummary, ChainBreak> {
    let mut v = ChainVerifier::default();
    for e in entries {
        v.push(&e)?;
    }
    v.finish(head_seq, head_hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = AuditEntry::new(
                    seq,
                    Timestamp(seq * 1000),
                    format!("client-{seq}"),
                    (seq % 2 == 0).then(|| "nhs-a".to_string()),
                    "SubmitRecords".into(),
                    None,
                    vec![format!("budget_contribution/p/nhs-a/2026Q{}", seq % 4 + 1)],
                    prev,
                );
                prev = e.hash;
                e
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(5);
        let head = c[4].hash;
        assert_eq!(verify(c, 5, head), Ok(ChainSummary { entries: 5, head }));
        assert_eq!(verify(Vec::new(), 0, GENESIS).unwrap().entries, 0);
    }

    #[test]
    fn every_kind_of_tampering_names_the_entry() {
        let c = chain(5);
        let head = c[4].hash;
        let mut edited = c.clone();
        edited[2].client_id = "someone-else".into();
        assert_eq!(verify(edited, 5, head), Err(ChainBreak::Altered { seq: 3 }));

        let mut rehashed = c.clone();
        rehashed[2].keys.push("partnerships/x".into());
        rehashed[2].hash = rehashed[2].compute_hash();
        assert_eq!(verify(rehashed, 5, head), Err(ChainBreak::Unlinked { seq: 4 }));

        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(verify(deleted, 5, head), Err(ChainBreak::Missing { seq: 2 }));

        let mut truncated = c.clone();
        truncated.pop();
        assert_eq!(verify(truncated, 5, head), Err(ChainBreak::Missing { seq: 5 }));
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let a = AuditEntry::new(1, Timestamp(0), "ab".into(), None, "c".into(), None, vec![], GENESIS);
        let b = AuditEntry::new(1, Timestamp(0), "a".into(), None, "bc".into(), None, vec![], GENESIS);
        assert_ne!(a.hash, b.hash);
        let c = AuditEntry::new(
            1,
            Timestamp(0),
            "a".into(),
            Some(String::new()),
            "c".into(),
            None,
            vec![],
            GENESIS,
        );
        let d = AuditEntry::new(1, Timestamp(0), "a".into(), None, "c".into(), None, vec![], GENESIS);
        assert_ne!(c.hash, d.hash);
    }
}
