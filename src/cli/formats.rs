//! The file formats of `import` (docs/formats.md): CSV with one file per kind and a
//! header row of field names, and NDJSON in the contract's JSON mapping. Both are
//! read through the contract's descriptors, so a field added to `proto/` is a column
//! without a change here.

use std::{
    io::{BufRead, Write},
    path::{Path, PathBuf},
    sync::LazyLock,
};

use anyhow::{Context, bail};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage,
    Value,
};

use crate::pb;

/// The contract's descriptors, decoded once.
pub static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    // Start-up: the descriptors are compiled into the binary, so this cannot fail
    // unless the build is broken.
    DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("the contract's descriptors are valid")
});

pub fn message(name: &str) -> anyhow::Result<MessageDescriptor> {
    POOL.get_message_by_name(name).with_context(|| format!("{name} is not in the contract"))
}

/// The nine record kinds: the CSV file stem and the `Record` field of each, in the
/// order `import` sends them (an endorsement needs its adoption first).
pub const RECORD_KINDS: [(&str, &str); 9] = [
    ("workforce_returns", "workforce_return"),
    ("service_contracts", "service_contract"),
    ("team_compositions", "team_composition"),
    ("survey_responses", "survey_response"),
    ("relationship_ratings", "relationship_rating"),
    ("principles_adoptions", "principles_adoption"),
    ("principles_endorsements", "principles_endorsement"),
    ("restructuring_events", "restructuring_event"),
    ("budget_contributions", "budget_contribution"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    Csv,
    Ndjson,
}

/// What one input file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Content {
    Agencies,
    Partnerships,
    Memberships,
    /// CSV: the records of one kind (index into [`RECORD_KINDS`]); NDJSON: `None`,
    /// any kinds, one `Record` per line.
    Records(Option<usize>),
}

impl Content {
    /// The contract message one entry of this content is.
    fn descriptor(self) -> anyhow::Result<MessageDescriptor> {
        message(match self {
            Content::Agencies => "partnership.v1.CreateAgencyRequest",
            Content::Partnerships => "partnership.v1.CreatePartnershipRequest",
            Content::Memberships => "partnership.v1.CreateMembershipRequest",
            Content::Records(_) => "partnership.v1.Record",
        })
    }

    /// A parsed entry as the typed message of this content.
    fn entry(self, dynamic: &DynamicMessage) -> Result<Entry, prost::DecodeError> {
        let bytes = dynamic.encode_to_vec();
        let bytes = bytes.as_slice();
        Ok(match self {
            Content::Agencies => Entry::Agency(Message::decode(bytes)?),
            Content::Partnerships => Entry::Partnership(Message::decode(bytes)?),
            Content::Memberships => Entry::Membership(Message::decode(bytes)?),
            Content::Records(_) => Entry::Record(Message::decode(bytes)?),
        })
    }
}

#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: Format,
    pub content: Content,
}

impl InputFile {
    /// Classifies a file by its name: `agencies`, `partnerships`, `memberships` or a
    /// record kind's plural (`workforce_returns.csv`); any other NDJSON file holds
    /// records of any kind.
    pub fn classify(path: &Path, format: Option<Format>) -> anyhow::Result<InputFile> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
        let format = match (format, ext) {
            (Some(f), _) => f,
            (None, "csv") => Format::Csv,
            (None, "ndjson" | "jsonl") => Format::Ndjson,
            _ => {
                bail!("{}: cannot tell the format from the name; give --format csv or ndjson", path.display())
            }
        };
        let content = match stem {
            "agencies" => Content::Agencies,
            "partnerships" => Content::Partnerships,
            "memberships" => Content::Memberships,
            _ => match RECORD_KINDS.iter().position(|(s, _)| *s == stem) {
                Some(i) if format == Format::Csv => Content::Records(Some(i)),
                _ if format == Format::Ndjson => Content::Records(None),
                _ => bail!(
                    "{}: a CSV file is named by what it holds: agencies, partnerships, memberships or one of {}",
                    path.display(),
                    RECORD_KINDS.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
                ),
            },
        };
        Ok(InputFile { path: path.to_path_buf(), format, content })
    }
}

/// An entry read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    Agency(pb::CreateAgencyRequest),
    Partnership(pb::CreatePartnershipRequest),
    Membership(pb::CreateMembershipRequest),
    Record(pb::Record),
}

/// One entry and the lines it came from: `line` its first, `parts` the line of each
/// team entry (`entries[j]`), for mapping errors back.
#[derive(Debug, Clone)]
pub struct Item {
    pub line: u64,
    pub parts: Vec<u64>,
    pub entry: Entry,
}

/// A problem with one line, found before anything is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

/// The line an error at `path` within an item (`team_composition.entries[2].headcount`)
/// is about.
pub fn line_of(item: &Item, path: &str) -> u64 {
    let Some(rest) = path.split_once("entries[").map(|(_, r)| r) else { return item.line };
    rest.split_once(']')
        .and_then(|(j, _)| j.parse::<usize>().ok())
        .and_then(|j| item.parts.get(j).copied())
        .unwrap_or(item.line)
}

/// Reads a file's entries one at a time; local problems come back as errors of a
/// line, and reading goes on.
pub fn read(file: &InputFile) -> anyhow::Result<Box<dyn Iterator<Item = Result<Item, LineError>> + Send>> {
    let open = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        Ok(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(&file.path).with_context(|| format!("opening {}", file.path.display()))?,
        ))
    };
    Ok(match file.format {
        Format::Ndjson => Box::new(NdjsonReader::new(open()?, file.content)?),
        Format::Csv => {
            Box::new(CsvReader::new(open()?, file.content).with_context(|| file.path.display().to_string())?)
        }
    })
}

// ---------------------------------------------------------------------------------
// NDJSON

struct NdjsonReader<R> {
    lines: std::io::Lines<R>,
    line: u64,
    descriptor: MessageDescriptor,
    content: Content,
}

impl<R: BufRead> NdjsonReader<R> {
    fn new(reader: R, content: Content) -> anyhow::Result<Self> {
        Ok(NdjsonReader { lines: reader.lines(), line: 0, descriptor: content.descriptor()?, content })
    }

    fn parse(&self, text: &str) -> Result<Entry, LineError> {
        let bad = |reason: String| LineError { line: self.line, field: String::new(), reason };
        let mut de = serde_json::Deserializer::from_str(text);
        let dynamic = DynamicMessage::deserialize(self.descriptor.clone(), &mut de).map_err(|e| {
            bad(format!("not a {} in the contract's JSON mapping: {e}", self.descriptor.name()))
        })?;
        de.end().map_err(|e| bad(format!("more than one JSON value on the line: {e}")))?;
        self.content.entry(&dynamic).map_err(|e| bad(format!("cannot be decoded: {e}")))
    }
}

impl<R: BufRead> Iterator for NdjsonReader<R> {
    type Item = Result<Item, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = match self.lines.next()? {
                Ok(t) => t,
                Err(e) => {
                    self.line += 1;
                    return Some(Err(LineError {
                        line: self.line,
                        field: String::new(),
                        reason: e.to_string(),
                    }));
                }
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            return Some(self.parse(&text).map(|entry| Item { line: self.line, parts: Vec::new(), entry }));
        }
    }
}

/// One message per line in the contract's JSON mapping (proto3 JSON: lowerCamelCase
/// names, enums by name, 64-bit integers as strings).
pub fn ndjson_line<M: Message>(descriptor: &MessageDescriptor, message: &M) -> anyhow::Result<String> {
    let dynamic = DynamicMessage::decode(descriptor.clone(), message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string(&dynamic)?)
}

// ---------------------------------------------------------------------------------
// CSV

/// Where a column's value goes.
#[derive(Debug, Clone)]
struct Column {
    /// The field path from the file's message (`agency.display_name`).
    path: Vec<FieldDescriptor>,
    /// The name errors use: the path from the entry as the contract names it.
    name: String,
    /// The header of its column.
    header: String,
}

impl Column {
    fn name_in_file(&self) -> String {
        self.header.clone()
    }
}

/// (columns of the entry, columns of each team entry)
fn schema(content: Content) -> anyhow::Result<(Vec<Column>, Vec<Column>)> {
    let column = |path: Vec<FieldDescriptor>, prefix: &str| {
        let name = format!("{prefix}{}", path.iter().map(|f| f.name()).collect::<Vec<_>>().join("."));
        let header = path.last().map(|f| f.name().to_string()).unwrap_or_default();
        Column { path, name, header }
    };
    let scalars = |m: &MessageDescriptor, prefix: &str, base: Vec<FieldDescriptor>| -> Vec<Column> {
        m.fields()
            .filter(|f| !f.is_list() && !matches!(f.kind(), Kind::Message(_)))
            .map(|f| {
                let mut path = base.clone();
                path.push(f);
                column(path, prefix)
            })
            .collect()
    };
    Ok(match content {
        Content::Agencies => {
            let req = message("partnership.v1.CreateAgencyRequest")?;
            let agency = message("partnership.v1.Agency")?;
            let mut cols = vec![column(vec![field(&req, "agency_id")?], "")];
            for name in ["display_name", "sector"] {
                cols.push(column(vec![field(&req, "agency")?, field(&agency, name)?], ""));
            }
            (cols, Vec::new())
        }
        Content::Partnerships => {
            let req = message("partnership.v1.CreatePartnershipRequest")?;
            let p = message("partnership.v1.Partnership")?;
            let mut cols = vec![column(vec![field(&req, "partnership_id")?], "")];
            for name in ["display_name", "purpose"] {
                cols.push(column(vec![field(&req, "partnership")?, field(&p, name)?], ""));
            }
            (cols, Vec::new())
        }
        Content::Memberships => {
            // `partnership` stands for the request's `parent` (`partnerships/{id}`).
            let req = message("partnership.v1.CreateMembershipRequest")?;
            let m = message("partnership.v1.Membership")?;
            let mut cols = vec![Column {
                path: vec![field(&req, "parent")?],
                name: "parent".into(),
                header: "partnership".into(),
            }];
            for name in ["agency", "role", "start_date", "end_date"] {
                cols.push(column(vec![field(&req, "membership")?, field(&m, name)?], ""));
            }
            (cols, Vec::new())
        }
        Content::Records(Some(i)) => {
            let record = message("partnership.v1.Record")?;
            let kind = field(&record, RECORD_KINDS[i].1)?;
            let Kind::Message(m) = kind.kind() else { bail!("Record.{} is not a message", kind.name()) };
            let prefix = format!("{}.", kind.name());
            let cols = scalars(&m, "", vec![kind.clone()]);
            let entries = m.fields().find(|f| f.is_list() && matches!(f.kind(), Kind::Message(_)));
            let parts = match entries {
                Some(list) => {
                    let Kind::Message(entry) = list.kind() else { unreachable!("checked above") };
                    scalars(&entry, &format!("{prefix}{}[].", list.name()), Vec::new())
                }
                None => Vec::new(),
            };
            (cols, parts)
        }
        Content::Records(None) => bail!("NDJSON records have no columns"),
    })
}

fn field(m: &MessageDescriptor, name: &str) -> anyhow::Result<FieldDescriptor> {
    m.get_field_by_name(name).with_context(|| format!("{}.{name} is not in the contract", m.full_name()))
}

struct CsvReader<R: std::io::Read> {
    rows: csv::StringRecordsIntoIter<R>,
    /// For each header position, the column it fills (entry or part).
    map: Vec<Slot>,
    content: Content,
    root: MessageDescriptor,
    /// The team being gathered: its key cells, lines and message.
    pending: Option<(Vec<String>, Item, DynamicMessage)>,
    /// Keys of teams already finished, so that a team's rows apart are an error, not a
    /// silent second record.
    done: std::collections::HashSet<Vec<String>>,
    entry_columns: Vec<Column>,
    part_columns: Vec<Column>,
    /// The messages one level down that entry columns fill (a record's kind, a
    /// request's `agency`), each made once per row.
    nested: Vec<(FieldDescriptor, MessageDescriptor)>,
    finished: bool,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Entry(usize),
    Part(usize),
}

impl<R: std::io::Read> CsvReader<R> {
    fn new(reader: R, content: Content) -> anyhow::Result<Self> {
        let (entry_columns, part_columns) = schema(content)?;
        let mut csv = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(reader);
        let header = csv.headers().context("reading the header row")?.clone();
        let mut map = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for name in header.iter() {
            let name = name.trim();
            let slot = if let Some(i) = entry_columns.iter().position(|c| c.name_in_file() == name) {
                Slot::Entry(i)
            } else if let Some(i) = part_columns.iter().position(|c| c.name_in_file() == name) {
                Slot::Part(i)
            } else {
                let all: Vec<String> =
                    entry_columns.iter().chain(&part_columns).map(Column::name_in_file).collect();
                bail!("line 1: unknown column {name:?}; the columns are {}", all.join(", "));
            };
            if !seen.insert(name.to_string()) {
                bail!("line 1: column {name:?} appears twice");
            }
            map.push(slot);
        }
        // A required field needs its column; proto3 `optional` fields may be left out.
        for c in entry_columns.iter().chain(&part_columns) {
            let leaf = c.path.last().context("a column without a field")?;
            if !seen.contains(&c.name_in_file()) && !leaf.supports_presence() {
                bail!("line 1: column {:?} is missing", c.name_in_file());
            }
        }
        let root = content.descriptor()?;
        let mut nested: Vec<(FieldDescriptor, MessageDescriptor)> = Vec::new();
        for c in entry_columns.iter().filter(|c| c.path.len() > 1) {
            if let Kind::Message(m) = c.path[0].kind()
                && !nested.iter().any(|(f, _)| *f == c.path[0])
            {
                nested.push((c.path[0].clone(), m));
            }
        }
        Ok(CsvReader {
            rows: csv.into_records(),
            map,
            content,
            root,
            pending: None,
            done: Default::default(),
            entry_columns,
            part_columns,
            nested,
            finished: false,
        })
    }

    /// Parses one row into the entry's message and, for teams, one entry message.
    fn row(
        &self,
        line: u64,
        row: &csv::StringRecord,
    ) -> Result<(DynamicMessage, Option<DynamicMessage>), LineError> {
        let mut entry = DynamicMessage::new(self.root.clone());
        let mut part =
            self.part_columns.first().map(|c| DynamicMessage::new(c.path[0].parent_message().clone()));
        // Columns one message down (`workforce_return.leavers`, `agency.sector`) fill
        // that message, set into the entry once at the end: setting a oneof member
        // per cell would clear the oneof's other members every time. Made for every
        // row, so a kind whose every cell is empty and optional is still that kind.
        let mut nested: Vec<(FieldDescriptor, DynamicMessage)> =
            self.nested.iter().map(|(f, m)| (f.clone(), DynamicMessage::new(m.clone()))).collect();
        for (cell, slot) in row.iter().zip(&self.map) {
            let column = match *slot {
                Slot::Entry(i) => &self.entry_columns[i],
                Slot::Part(i) => &self.part_columns[i],
            };
            let leaf = &column.path[column.path.len() - 1];
            let value = cell_value(leaf, cell.trim()).map_err(|reason| LineError {
                line,
                field: column.name.clone(),
                reason,
            })?;
            let Some(mut value) = value else { continue };
            if column.header == "partnership" && self.content == Content::Memberships {
                value = Value::String(format!("partnerships/{}", value.as_str().unwrap_or_default()));
            }
            let target: &mut DynamicMessage = match (*slot, column.path.len()) {
                (Slot::Part(_), _) => match part.as_mut() {
                    Some(p) => p,
                    None => continue,
                },
                (Slot::Entry(_), 1) => &mut entry,
                (Slot::Entry(_), _) => match nested.iter_mut().find(|(f, _)| *f == column.path[0]) {
                    Some((_, m)) => m,
                    None => unreachable!("every entry column's parent is made for the row"),
                },
            };
            target.set_field(leaf, value);
        }
        for (f, m) in nested {
            entry.set_field(&f, Value::Message(m));
        }
        Ok((entry, part))
    }

    fn finish(&self, item: Item, message: DynamicMessage) -> Result<Item, LineError> {
        match self.content.entry(&message) {
            Ok(entry) => Ok(Item { entry, ..item }),
            Err(e) => Err(LineError { line: item.line, field: String::new(), reason: e.to_string() }),
        }
    }
}

impl<R: std::io::Read> Iterator for CsvReader<R> {
    type Item = Result<Item, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.finished {
                return None;
            }
            let Some(row) = self.rows.next() else {
                self.finished = true;
                let (_, item, message) = self.pending.take()?;
                return Some(self.finish(item, message));
            };
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Some(Err(LineError { line, field: String::new(), reason: e.to_string() }));
                }
            };
            let line = row.position().map(|p| p.line()).unwrap_or(0);
            let (entry, part) = match self.row(line, &row) {
                Ok(parsed) => parsed,
                Err(e) => return Some(Err(e)),
            };
            let Some(part) = part else {
                return Some(self.finish(
                    Item { line, parts: Vec::new(), entry: Entry::Record(pb::Record::default()) },
                    entry,
                ));
            };
            // A team: rows with the same key cells, one after another, are one record.
            let key: Vec<String> = row
                .iter()
                .zip(&self.map)
                .filter(|(_, s)| matches!(s, Slot::Entry(_)))
                .map(|(c, _)| c.trim().to_string())
                .collect();
            let list = self.entry_columns[0].path[0].clone();
            let Kind::Message(kind) = list.kind() else { unreachable!("a record kind is a message") };
            let Some(entries) = kind.fields().find(|f| f.is_list()) else {
                unreachable!("teams have entries")
            };
            match self.pending.as_mut() {
                Some((k, item, message)) if *k == key => {
                    item.parts.push(line);
                    if let Some(team) = message.get_field_mut(&list).as_message_mut()
                        && let Some(l) = team.get_field_mut(&entries).as_list_mut()
                    {
                        l.push(Value::Message(part));
                    }
                }
                _ => {
                    if self.done.contains(&key) {
                        return Some(Err(LineError {
                            line,
                            field: String::new(),
                            reason: "continues a team whose rows ended earlier; keep a team's rows together"
                                .into(),
                        }));
                    }
                    let mut entry = entry;
                    if let Some(team) = entry.get_field_mut(&list).as_message_mut()
                        && let Some(l) = team.get_field_mut(&entries).as_list_mut()
                    {
                        l.push(Value::Message(part));
                    }
                    let placeholder =
                        Item { line, parts: vec![line], entry: Entry::Record(pb::Record::default()) };
                    let previous = self.pending.replace((key.clone(), placeholder, entry));
                    if let Some((k, item, message)) = previous {
                        self.done.insert(k);
                        return Some(self.finish(item, message));
                    }
                }
            }
        }
    }
}

/// One cell as a field's value: `None` for an empty cell of an optional field.
fn cell_value(field: &FieldDescriptor, cell: &str) -> Result<Option<Value>, String> {
    if cell.is_empty() {
        return match field.kind() {
            Kind::String => Ok(Some(Value::String(String::new()))),
            _ if field.supports_presence() => Ok(None),
            _ => Err("is required; the cell is empty".into()),
        };
    }
    let number = |what: &str| format!("{cell:?} is not {what}");
    Ok(Some(match field.kind() {
        Kind::String => Value::String(cell.to_string()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(cell.parse().map_err(|_| number("an integer (int64)"))?)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(cell.parse().map_err(|_| number("an integer (int32)"))?)
        }
        Kind::Uint64 | Kind::Fixed64 => Value::U64(cell.parse().map_err(|_| number("an integer (uint64)"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(cell.parse().map_err(|_| number("an integer (uint32)"))?),
        Kind::Double => Value::F64(cell.parse().map_err(|_| number("a number"))?),
        Kind::Float => Value::F32(cell.parse().map_err(|_| number("a number"))?),
        Kind::Bool => Value::Bool(match cell.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(number("true or false")),
        }),
        Kind::Enum(e) => Value::EnumNumber(enum_number(&e, cell)?),
        Kind::Bytes | Kind::Message(_) => return Err("has no CSV form".into()),
    }))
}

/// An enum cell: the value's name as the contract spells it (`SECTOR_NHS_BODY`), or
/// without the enum's prefix (`nhs_body`), in any case.
pub fn enum_number(e: &EnumDescriptor, cell: &str) -> Result<i32, String> {
    let prefix = enum_prefix(e);
    let wanted = cell.to_ascii_uppercase();
    e.values()
        .filter(|v| v.number() != 0)
        .find(|v| v.name() == wanted || v.name().strip_prefix(&prefix) == Some(wanted.as_str()))
        .map(|v| v.number())
        .ok_or_else(|| {
            let names: Vec<String> = e
                .values()
                .filter(|v| v.number() != 0)
                .map(|v| v.name().strip_prefix(&prefix).unwrap_or(v.name()).to_ascii_lowercase())
                .collect();
            format!("{cell:?} is not one of {}", names.join(", "))
        })
}

/// `SECTOR_` for `SECTOR_UNSPECIFIED`, ...: the prefix every value of a buf-style
/// enum shares.
fn enum_prefix(e: &EnumDescriptor) -> String {
    e.values()
        .find(|v| v.number() == 0)
        .and_then(|v| v.name().strip_suffix("UNSPECIFIED").map(str::to_string))
        .unwrap_or_default()
}

/// Writes entries as a CSV file of their kind (the inverse of reading): for
/// `docs/examples/` and for anyone moving data between services.
pub fn write_csv<W: Write>(out: W, content: Content, entries: &[Entry]) -> anyhow::Result<()> {
    let (entry_columns, part_columns) = schema(content)?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(entry_columns.iter().chain(&part_columns).map(Column::name_in_file))?;
    for entry in entries {
        let message = match entry {
            Entry::Agency(m) => to_dynamic("partnership.v1.CreateAgencyRequest", m),
            Entry::Partnership(m) => to_dynamic("partnership.v1.CreatePartnershipRequest", m),
            Entry::Membership(m) => to_dynamic("partnership.v1.CreateMembershipRequest", m),
            Entry::Record(m) => to_dynamic("partnership.v1.Record", m),
        };
        let cells: Vec<String> = entry_columns
            .iter()
            .map(|c| {
                let cell = cell_text(&message, &c.path);
                if content == Content::Memberships && c.header == "partnership" {
                    cell.strip_prefix("partnerships/").unwrap_or(&cell).to_string()
                } else {
                    cell
                }
            })
            .collect();
        if part_columns.is_empty() {
            w.write_record(&cells)?;
            continue;
        }
        let list = &entry_columns[0].path[0];
        let kind = message.get_field(list);
        let Some(team) = kind.as_message() else { continue };
        let Some(entries) = team.descriptor().fields().find(|f| f.is_list()) else { continue };
        for part in team.get_field(&entries).as_list().unwrap_or_default() {
            let Some(part) = part.as_message() else { continue };
            let mut row = cells.clone();
            row.extend(part_columns.iter().map(|c| cell_text(part, &c.path)));
            w.write_record(&row)?;
        }
    }
    w.flush()?;
    Ok(())
}

fn cell_text(message: &DynamicMessage, path: &[FieldDescriptor]) -> String {
    let mut m = message.clone();
    for f in &path[..path.len() - 1] {
        match m.get_field(f).as_message() {
            Some(inner) => m = inner.clone(),
            None => return String::new(),
        }
    }
    let leaf = &path[path.len() - 1];
    if leaf.supports_presence() && !m.has_field(leaf) {
        return String::new();
    }
    match (&*m.get_field(leaf), leaf.kind()) {
        (Value::EnumNumber(n), Kind::Enum(e)) => {
            e.get_value(*n).map(|v| v.name().to_string()).unwrap_or_else(|| n.to_string())
        }
        (Value::String(s), _) => s.clone(),
        (Value::I64(v), _) => v.to_string(),
        (Value::I32(v), _) => v.to_string(),
        (Value::U64(v), _) => v.to_string(),
        (Value::U32(v), _) => v.to_string(),
        (Value::F64(v), _) => v.to_string(),
        (Value::F32(v), _) => v.to_string(),
        (Value::Bool(v), _) => v.to_string(),
        _ => String::new(),
    }
}

/// A prost message as a dynamic one of the type the contract calls `name`.
fn to_dynamic<M: Message>(name: &str, message: &M) -> DynamicMessage {
    let Some(descriptor) = POOL.get_message_by_name(name) else {
        unreachable!("{name} is a message of the contract")
    };
    match DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()) {
        Ok(m) => m,
        Err(_) => unreachable!("a message decodes as its own type"),
    }
}

/// The value a violation's path (`workforce_return.agency`) names in a record, as
/// text: used to tell violations about ids this import creates.
pub fn record_value(record: &pb::Record, path: &str) -> Option<String> {
    let mut m = to_dynamic("partnership.v1.Record", record);
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let f = m.descriptor().get_field_by_name(name)?;
        let value = m.get_field(&f).into_owned();
        let value = match index {
            Some(i) => value.as_list()?.get(i)?.clone(),
            None => value,
        };
        if parts.peek().is_none() {
            return value.as_str().map(str::to_string);
        }
        m = value.as_message()?.clone();
    }
    None
}

/// Whether any id-like text field of the record (at any depth) is in `ids`.
pub fn record_names_any(record: &pb::Record, ids: &std::collections::HashSet<String>) -> bool {
    fn walk(m: &DynamicMessage, ids: &std::collections::HashSet<String>) -> bool {
        m.fields().any(|(_, v)| match v {
            Value::String(s) => ids.contains(s),
            Value::Message(inner) => walk(inner, ids),
            Value::List(items) => items.iter().any(|i| i.as_message().is_some_and(|inner| walk(inner, ids))),
            _ => false,
        })
    }
    !ids.is_empty() && walk(&to_dynamic("partnership.v1.Record", record), ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_items(content: Content, text: &str) -> Vec<Result<Item, LineError>> {
        CsvReader::new(text.as_bytes(), content).unwrap().collect()
    }

    #[test]
    fn a_workforce_row_becomes_a_record_and_empty_optionals_stay_unset() {
        let text = "partnership,agency,period,headcount_start,headcount_end,joiners,leavers,permanent,fixed_term,agency_staff,staff_over_one_year_service,headcount_one_year_ago\n\
                    pa,nhs-a,2026Q3,100,102,10,8,90,10,2,,\n";
        let items = csv_items(Content::Records(Some(0)), text);
        let Ok(Item { line: 2, entry: Entry::Record(r), .. }) = &items[0] else { panic!("{items:?}") };
        let Some(pb::record::Kind::WorkforceReturn(w)) = &r.kind else { panic!("{r:?}") };
        assert_eq!((w.headcount_end, w.leavers, w.staff_over_one_year_service), (102, 8, None));
        assert_eq!(w.agency, "nhs-a");
    }

    #[test]
    fn team_rows_with_one_key_are_one_record_and_keep_their_lines() {
        let text = "partnership,team_id,period,reporting_agency,employer,employment,headcount\n\
                    pa,t1,2026Q3,nhs-a,nhs-a,permanent,4\n\
                    pa,t1,2026Q3,nhs-a,la-b,EMPLOYMENT_AGENCY_STAFF,1\n\
                    pa,t2,2026Q3,nhs-a,la-b,Fixed_Term,2\n\
                    pa,t1,2026Q3,nhs-a,la-b,permanent,3\n";
        let mut items = csv_items(Content::Records(Some(2)), text);
        assert_eq!(items.len(), 3, "{items:?}");
        // The refusal comes as soon as the row is read; t2 follows when it ends.
        let refused = items.remove(1);
        items.push(refused);
        let Ok(first) = &items[0] else { panic!("{items:?}") };
        assert_eq!((first.line, first.parts.clone()), (2, vec![2, 3]));
        let Entry::Record(pb::Record { kind: Some(pb::record::Kind::TeamComposition(t)) }) = &first.entry
        else {
            panic!()
        };
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[1].employment, pb::Employment::AgencyStaff as i32);
        assert_eq!(line_of(first, "team_composition.entries[1].headcount"), 3);
        let Ok(second) = &items[1] else { panic!("{items:?}") };
        assert_eq!(second.line, 4);
        let Err(e) = &items[2] else { panic!("a team's rows apart must be refused: {items:?}") };
        assert_eq!(e.line, 5);
    }

    #[test]
    fn bad_cells_name_their_line_and_column() {
        let text = "agency_id,display_name,sector\nnhs-a,NHS A,nhs_body\nla-b,LA B,council\nx,X,\n";
        let items = csv_items(Content::Agencies, text);
        assert!(
            matches!(&items[0], Ok(Item { entry: Entry::Agency(a), .. }) if a.agency.as_ref().unwrap().sector == pb::Sector::NhsBody as i32)
        );
        let Err(e) = &items[1] else { panic!() };
        assert_eq!((e.line, e.field.as_str()), (3, "agency.sector"));
        assert!(e.reason.contains("local_authority"), "{}", e.reason);
        let Err(e) = &items[2] else { panic!() };
        assert_eq!((e.line, e.field.as_str()), (4, "agency.sector"));
        let text = "partnership,agency,period,headcount_start,headcount_end,joiners,leavers,permanent,fixed_term,agency_staff\npa,nhs-a,2026Q3,x,1,1,1,1,0,0\n";
        let items = csv_items(Content::Records(Some(0)), text);
        let Err(e) = &items[0] else { panic!() };
        assert_eq!(e.field, "workforce_return.headcount_start");
        assert!(CsvReader::new("agency_id,display_name\n".as_bytes(), Content::Agencies).is_err());
        assert!(
            CsvReader::new("agency_id,display_name,sector,colour\n".as_bytes(), Content::Agencies).is_err()
        );
    }

    #[test]
    fn csv_written_reads_back_the_same_entries() {
        let team = pb::Record {
            kind: Some(pb::record::Kind::TeamComposition(pb::TeamComposition {
                partnership: "pa".into(),
                team_id: "t, with comma".into(),
                period: "2026Q3".into(),
                reporting_agency: "nhs-a".into(),
                entries: vec![
                    pb::TeamEntry { employer: "nhs-a".into(), employment: 1, headcount: 3 },
                    pb::TeamEntry { employer: "la-b".into(), employment: 3, headcount: 1 },
                ],
            })),
        };
        let membership = pb::CreateMembershipRequest {
            parent: "partnerships/pa".into(),
            membership: Some(pb::Membership {
                agency: "nhs-a".into(),
                role: 1,
                start_date: "2024-01-01".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        };
        for (content, entry) in [
            (Content::Records(Some(2)), Entry::Record(team)),
            (Content::Memberships, Entry::Membership(membership)),
        ] {
            let mut out = Vec::new();
            write_csv(&mut out, content, std::slice::from_ref(&entry)).unwrap();
            let back: Vec<Entry> = csv_items(content, std::str::from_utf8(&out).unwrap())
                .into_iter()
                .map(|i| i.unwrap().entry)
                .collect();
            assert_eq!(back, vec![entry]);
        }
    }

    #[test]
    fn ndjson_lines_use_the_contract_mapping() {
        let text = "{\"surveyResponse\":{\"partnership\":\"pa\",\"period\":\"2026Q3\",\"responseId\":\"r1\",\"respondentAgency\":\"nhs-a\",\"morale\":4}}\n\n{\"nope\":1}\n";
        let items: Vec<_> = NdjsonReader::new(text.as_bytes(), Content::Records(None)).unwrap().collect();
        let Ok(Item { line: 1, entry: Entry::Record(r), .. }) = &items[0] else { panic!("{items:?}") };
        assert_eq!(record_value(r, "survey_response.respondent_agency").as_deref(), Some("nhs-a"));
        let Err(e) = &items[1] else { panic!("{items:?}") };
        assert_eq!(e.line, 3);
    }
}
