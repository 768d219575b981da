//! `partnership-metrics export`: every report of a period through ExportReports, in
//! the formats data teams load (docs/formats.md): a long table as CSV or Parquet, the
//! reports as NDJSON, a DHIS2 data value set, a FHIR R4 Bundle of MeasureReports.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    sync::Arc,
};

use anyhow::{Context, bail};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::client::describe;
use crate::{
    configuration::{ExportArgs, ExportFormat, ExportTable},
    pb::{self, report_service_client::ReportServiceClient},
};

/// The canonical URL of methodology v1 as a FHIR Measure, and the code systems of
/// its scores and indicators (docs/formats.md).
pub const FHIR_BASE: &str = "https://partnership-metrics.example/fhir";
/// Rows per Parquet row group written at once.
const PARQUET_BATCH: usize = 8192;

pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    let mapping = match (&args.format, &args.dhis2_mapping) {
        (ExportFormat::Dhis2, Some(path)) => Some(Dhis2Mapping::read(path)?),
        (ExportFormat::Dhis2, None) => bail!("--format dhis2 needs --dhis2-mapping FILE (docs/formats.md)"),
        _ => None,
    };
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None if args.format == ExportFormat::Parquet => bail!("--format parquet needs --out FILE"),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut writer = Writer::new(args.format, args.table, out, mapping)?;
    let mut client =
        ReportServiceClient::new(args.client.connect().await?).max_decoding_message_size(64 << 20);
    let mut stream = client
        .export_reports(pb::ExportReportsRequest {
            period: args.period.clone(),
            min_respondents: args.min_respondents,
            weights: super::report::parse_weights(&args.weight)?,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", describe(&s)))?
        .into_inner();
    let mut reports = 0u64;
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(s) => bail!("the export stream ended after {reports} reports: {}", describe(&s)),
        };
        let Some(report) = message.report else { continue };
        writer.write(&report)?;
        reports += 1;
    }
    let unmapped = writer.finish()?;
    eprintln!("export: {reports} reports of {}", args.period);
    if let Some(u) = unmapped
        && !u.is_empty()
    {
        eprint!("{}", u.describe());
        bail!("{} values have no DHIS2 mapping and were not exported (listed above)", u.values);
    }
    Ok(())
}

/// One row of the long table: an indicator, a domain score or the PSI.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub partnership: String,
    pub period: String,
    pub methodology_version: String,
    /// `indicator`, `domain` or `index`.
    pub item_type: &'static str,
    /// The indicator id, the domain id (`D1`) or `PSI`.
    pub item: String,
    pub domain: Option<String>,
    pub value: Option<f64>,
    pub score: Option<f64>,
    pub missing_reason: Option<String>,
    pub records_used: Option<i64>,
    pub band: Option<String>,
    pub weight: Option<f64>,
}

pub const ROW_COLUMNS: [&str; 12] = [
    "partnership",
    "period",
    "methodology_version",
    "item_type",
    "item",
    "domain",
    "value",
    "score",
    "missing_reason",
    "records_used",
    "band",
    "weight",
];

pub const ALERT_COLUMNS: [&str; 6] =
    ["partnership", "period", "methodology_version", "code", "message", "indicator_ids"];

/// An enum value's name without its prefix, lower case: `no_data`, `green`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_ascii_lowercase()
}

fn missing(reason: i32) -> Option<String> {
    match pb::MissingReason::try_from(reason) {
        Ok(pb::MissingReason::Unspecified) => None,
        Ok(r) => Some(short(r.as_str_name(), "MISSING_REASON_")),
        Err(_) => Some(reason.to_string()),
    }
}

fn band(band: i32) -> Option<String> {
    match pb::Band::try_from(band) {
        Ok(pb::Band::Unspecified) => None,
        Ok(b) => Some(short(b.as_str_name(), "BAND_")),
        Err(_) => Some(band.to_string()),
    }
}

/// The long rows of one report: the PSI, then each domain, then each indicator.
pub fn rows(report: &pb::PartnershipReport) -> Vec<Row> {
    let period = report.period.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    let base = |item_type, item: String| Row {
        partnership: report.partnership.clone(),
        period: period.clone(),
        methodology_version: report.methodology_version.clone(),
        item_type,
        item,
        domain: None,
        value: None,
        score: None,
        missing_reason: None,
        records_used: None,
        band: None,
        weight: None,
    };
    let mut out = Vec::with_capacity(1 + report.domains.len() + report.indicators.len());
    let composite = report.composite.clone().unwrap_or_default();
    // The PSI's weight is W, the total weight of the present domains; a domain's
    // number is a score, so its `value` is empty (as the Python client's DataFrame).
    out.push(Row {
        value: composite.psi,
        missing_reason: missing(composite.missing_reason),
        band: band(composite.band),
        weight: composite.total_weight,
        ..base("index", "PSI".into())
    });
    for d in &report.domains {
        out.push(Row {
            domain: Some(d.domain.clone()),
            score: d.score,
            missing_reason: missing(d.missing_reason),
            weight: Some(d.weight),
            ..base("domain", d.domain.clone())
        });
    }
    for i in &report.indicators {
        out.push(Row {
            domain: Some(i.domain.clone()),
            value: i.value,
            score: i.score,
            missing_reason: missing(i.missing_reason),
            records_used: Some(i.records_used),
            ..base("indicator", i.id.clone())
        });
    }
    out
}

fn alert_rows(report: &pb::PartnershipReport) -> Vec<[String; 6]> {
    let period = report.period.as_ref().map(|p| p.id.clone()).unwrap_or_default();
    report
        .alerts
        .iter()
        .map(|a| {
            let code = pb::AlertCode::try_from(a.code)
                .map(|c| short(c.as_str_name(), "ALERT_CODE_"))
                .unwrap_or_else(|_| a.code.to_string());
            [
                report.partnership.clone(),
                period.clone(),
                report.methodology_version.clone(),
                code,
                a.message.clone(),
                a.indicator_ids.join(";"),
            ]
        })
        .collect()
}

/// Floats as Rust prints them: the shortest text that reads back as the same double.
fn number(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn row_cells(r: &Row) -> [String; 12] {
    [
        r.partnership.clone(),
        r.period.clone(),
        r.methodology_version.clone(),
        r.item_type.to_string(),
        r.item.clone(),
        r.domain.clone().unwrap_or_default(),
        number(r.value),
        number(r.score),
        r.missing_reason.clone().unwrap_or_default(),
        r.records_used.map(|n| n.to_string()).unwrap_or_default(),
        r.band.clone().unwrap_or_default(),
        number(r.weight),
    ]
}

/// The DHIS2 mapping file (docs/formats.md).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dhis2Mapping {
    /// Item id (`PSI`, `D1`, an indicator id) -> data element uid.
    pub data_elements: BTreeMap<String, String>,
    /// Partnership id -> organisation unit uid.
    pub org_units: BTreeMap<String, String>,
    #[serde(default)]
    pub data_set: Option<String>,
    #[serde(default)]
    pub category_option_combo: Option<String>,
    #[serde(default)]
    pub attribute_option_combo: Option<String>,
}

impl Dhis2Mapping {
    pub fn read(path: &Path) -> anyhow::Result<Dhis2Mapping> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mapping: Dhis2Mapping = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a DHIS2 mapping", path.display()))?;
        let uid = |u: &str| {
            u.len() == 11
                && u.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && u.chars().all(|c| c.is_ascii_alphanumeric())
        };
        for (what, id, u) in mapping
            .data_elements
            .iter()
            .map(|(k, v)| ("dataElements", k, v))
            .chain(mapping.org_units.iter().map(|(k, v)| ("orgUnits", k, v)))
        {
            if !uid(u) {
                bail!(
                    "{}: {what}.{id}: {u:?} is not a DHIS2 uid (11 letters and digits, a letter first)",
                    path.display()
                );
            }
        }
        Ok(mapping)
    }
}

/// What a DHIS2 export could not map.
#[derive(Debug, Default)]
pub struct Unmapped {
    pub items: BTreeMap<String, u64>,
    pub partnerships: BTreeSet<String>,
    pub values: u64,
}

impl Unmapped {
    fn is_empty(&self) -> bool {
        self.values == 0
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (item, n) in &self.items {
            out.push_str(&format!("dhis2: item {item} has no dataElement in the mapping ({n} values)\n"));
        }
        for p in &self.partnerships {
            out.push_str(&format!("dhis2: partnership {p} has no orgUnit in the mapping\n"));
        }
        out
    }
}

enum Sink {
    Csv(csv::Writer<Box<dyn Write + Send>>),
    Ndjson(Box<dyn Write + Send>, prost_reflect::MessageDescriptor),
    Parquet(Box<parquet::arrow::ArrowWriter<Box<dyn Write + Send>>>, Vec<Row>),
    Dhis2(Box<dyn Write + Send>, Dhis2Mapping, Vec<Json>, Unmapped),
    Fhir(Box<dyn Write + Send>, Vec<Json>),
}

pub struct Writer {
    sink: Sink,
    table: ExportTable,
}

fn row_schema() -> Arc<Schema> {
    let text = |n: &str, nullable| Field::new(n, DataType::Utf8, nullable);
    let float = |n: &str| Field::new(n, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        text("partnership", false),
        text("period", false),
        text("methodology_version", false),
        text("item_type", false),
        text("item", false),
        text("domain", true),
        float("value"),
        float("score"),
        text("missing_reason", true),
        Field::new("records_used", DataType::Int64, true),
        text("band", true),
        float("weight"),
    ]))
}

fn alert_schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        ALERT_COLUMNS.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect::<Vec<_>>(),
    ))
}

impl Writer {
    pub fn new(
        format: ExportFormat,
        table: ExportTable,
        out: Box<dyn Write + Send>,
        mapping: Option<Dhis2Mapping>,
    ) -> anyhow::Result<Writer> {
        let sink = match format {
            ExportFormat::Csv => {
                let mut w = csv::Writer::from_writer(out);
                match table {
                    ExportTable::Items => w.write_record(ROW_COLUMNS)?,
                    ExportTable::Alerts => w.write_record(ALERT_COLUMNS)?,
                }
                Sink::Csv(w)
            }
            ExportFormat::Ndjson => {
                Sink::Ndjson(out, super::formats::message("partnership.v1.PartnershipReport")?)
            }
            ExportFormat::Parquet => {
                let schema = match table {
                    ExportTable::Items => row_schema(),
                    ExportTable::Alerts => alert_schema(),
                };
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .build();
                Sink::Parquet(
                    Box::new(parquet::arrow::ArrowWriter::try_new(out, schema, Some(props))?),
                    Vec::new(),
                )
            }
            ExportFormat::Dhis2 => {
                Sink::Dhis2(out, mapping.unwrap_or_default(), Vec::new(), Unmapped::default())
            }
            ExportFormat::Fhir => Sink::Fhir(out, Vec::new()),
        };
        Ok(Writer { sink, table })
    }

    pub fn write(&mut self, report: &pb::PartnershipReport) -> anyhow::Result<()> {
        match (&mut self.sink, self.table) {
            (Sink::Csv(w), ExportTable::Items) => {
                for r in rows(report) {
                    w.write_record(row_cells(&r))?;
                }
            }
            (Sink::Csv(w), ExportTable::Alerts) => {
                for a in alert_rows(report) {
                    w.write_record(a)?;
                }
            }
            (Sink::Ndjson(w, descriptor), _) => {
                writeln!(w, "{}", super::formats::ndjson_line(descriptor, report)?)?;
            }
            (Sink::Parquet(w, pending), ExportTable::Items) => {
                pending.extend(rows(report));
                if pending.len() >= PARQUET_BATCH {
                    w.write(&row_batch(pending)?)?;
                    pending.clear();
                }
            }
            (Sink::Parquet(w, _), ExportTable::Alerts) => {
                let alerts = alert_rows(report);
                if !alerts.is_empty() {
                    w.write(&alert_batch(&alerts)?)?;
                }
            }
            (Sink::Dhis2(_, mapping, values, unmapped), _) => dhis2_values(report, mapping, values, unmapped),
            (Sink::Fhir(_, entries), _) => entries.push(fhir_entry(report)),
        }
        Ok(())
    }

    /// Finishes the file; for DHIS2, what could not be mapped.
    pub fn finish(self) -> anyhow::Result<Option<Unmapped>> {
        match self.sink {
            Sink::Csv(mut w) => w.flush()?,
            Sink::Ndjson(mut w, _) => w.flush()?,
            Sink::Parquet(mut w, pending) => {
                if !pending.is_empty() {
                    w.write(&row_batch(&pending)?)?;
                }
                w.close()?;
            }
            Sink::Dhis2(mut w, mapping, values, unmapped) => {
                let mut set = serde_json::Map::new();
                if let Some(ds) = mapping.data_set {
                    set.insert("dataSet".into(), Json::String(ds));
                }
                set.insert("dataValues".into(), Json::Array(values));
                serde_json::to_writer_pretty(&mut w, &Json::Object(set))?;
                writeln!(w)?;
                w.flush()?;
                return Ok(Some(unmapped));
            }
            Sink::Fhir(mut w, entries) => {
                let bundle = json!({
                    "resourceType": "Bundle",
                    "type": "collection",
                    "timestamp": now(),
                    "entry": entries,
                });
                serde_json::to_writer_pretty(&mut w, &bundle)?;
                writeln!(w)?;
                w.flush()?;
            }
        }
        Ok(None)
    }
}

fn row_batch(rows: &[Row]) -> anyhow::Result<RecordBatch> {
    let text =
        |f: fn(&Row) -> Option<&str>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<StringArray>()) };
    let float =
        |f: fn(&Row) -> Option<f64>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<Float64Array>()) };
    let columns: Vec<ArrayRef> = vec![
        text(|r| Some(&r.partnership)),
        text(|r| Some(&r.period)),
        text(|r| Some(&r.methodology_version)),
        text(|r| Some(r.item_type)),
        text(|r| Some(&r.item)),
        text(|r| r.domain.as_deref()),
        float(|r| r.value),
        float(|r| r.score),
        text(|r| r.missing_reason.as_deref()),
        Arc::new(rows.iter().map(|r| r.records_used).collect::<Int64Array>()),
        text(|r| r.band.as_deref()),
        float(|r| r.weight),
    ];
    Ok(RecordBatch::try_new(row_schema(), columns)?)
}

fn alert_batch(alerts: &[[String; 6]]) -> anyhow::Result<RecordBatch> {
    let columns: Vec<ArrayRef> = (0..6)
        .map(|i| Arc::new(alerts.iter().map(|a| Some(a[i].as_str())).collect::<StringArray>()) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(alert_schema(), columns)?)
}

fn dhis2_values(
    report: &pb::PartnershipReport,
    mapping: &Dhis2Mapping,
    values: &mut Vec<Json>,
    unmapped: &mut Unmapped,
) {
    // A domain's number is its score; everything else's its value.
    let present: Vec<(Row, f64)> =
        rows(report).into_iter().filter_map(|r| r.value.or(r.score).map(|v| (r, v))).collect();
    let Some(org_unit) = mapping.org_units.get(&report.partnership) else {
        if !present.is_empty() {
            unmapped.partnerships.insert(report.partnership.clone());
            unmapped.values += present.len() as u64;
        }
        return;
    };
    // DHIS2 has no empty value: a missing number is left out, as DHIS2 would store it.
    for (r, value) in present {
        let Some(element) = mapping.data_elements.get(&r.item) else {
            *unmapped.items.entry(r.item.clone()).or_default() += 1;
            unmapped.values += 1;
            continue;
        };
        let mut v = serde_json::Map::new();
        v.insert("dataElement".into(), Json::String(element.clone()));
        v.insert("period".into(), Json::String(r.period.clone()));
        v.insert("orgUnit".into(), Json::String(org_unit.clone()));
        if let Some(c) = &mapping.category_option_combo {
            v.insert("categoryOptionCombo".into(), Json::String(c.clone()));
        }
        if let Some(a) = &mapping.attribute_option_combo {
            v.insert("attributeOptionCombo".into(), Json::String(a.clone()));
        }
        v.insert("value".into(), Json::String(value.to_string()));
        v.insert(
            "comment".into(),
            Json::String(format!("partnership-metrics methodology {}", r.methodology_version)),
        );
        values.push(Json::Object(v));
    }
}

fn now() -> String {
    let mut t = prost_types::Timestamp::from(std::time::SystemTime::now());
    t.nanos = 0;
    t.to_string()
}

/// A stable `urn:uuid:` for a report (a name-based UUID from its partnership, period
/// and methodology), so the same export gives the same Bundle entries.
fn report_uuid(report: &pb::PartnershipReport, period: &str) -> String {
    let digest = Sha256::digest(format!("{}|{period}|{}", report.partnership, report.methodology_version));
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn coding(system: &str, code: &str, display: Option<&str>) -> Json {
    let mut c = json!({ "system": format!("{FHIR_BASE}/CodeSystem/{system}"), "code": code });
    if let Some(d) = display {
        c["display"] = Json::String(d.to_string());
    }
    c
}

/// One MeasureReport (docs/formats.md): the subject is the partnership as a FHIR
/// Group (R4 allows no Organization as a MeasureReport subject); one group for the
/// PSI with its band, one per domain with its indicators as strata.
fn fhir_entry(report: &pb::PartnershipReport) -> Json {
    let period = report.period.clone().unwrap_or_default();
    let composite = report.composite.clone().unwrap_or_default();
    let mut psi = json!({
        "code": { "coding": [coding("score", "PSI", Some("Partnership Sustainability Index"))] },
    });
    if let Some(v) = composite.psi {
        psi["measureScore"] = json!({ "value": v });
    }
    if let Some(b) = band(composite.band) {
        psi["extension"] =
            json!([{ "url": format!("{FHIR_BASE}/StructureDefinition/band"), "valueCode": b }]);
    }
    let mut groups = vec![psi];
    for d in &report.domains {
        let strata: Vec<Json> = report
            .indicators
            .iter()
            .filter(|i| i.domain == d.domain)
            .map(|i| {
                let text = match (missing(i.missing_reason), i.scored) {
                    (Some(m), _) => format!("{} (missing: {})", i.id, m.replace('_', " ")),
                    (None, false) => format!("{} (reported, not scored)", i.id),
                    (None, true) => i.id.clone(),
                };
                let mut s =
                    json!({ "value": { "coding": [coding("indicator", &i.id, None)], "text": text } });
                // A scored indicator's score, else its value (reported indicators).
                if let Some(v) = if i.scored { i.score } else { i.value } {
                    s["measureScore"] = json!({ "value": v });
                }
                s
            })
            .collect();
        let mut g = json!({ "code": { "coding": [coding("score", &d.domain, Some(&d.title))] } });
        if let Some(v) = d.score {
            g["measureScore"] = json!({ "value": v });
        }
        if !strata.is_empty() {
            g["stratifier"] =
                json!([{ "code": [{ "coding": [coding("score", "indicator", None)] }], "stratum": strata }]);
        }
        groups.push(g);
    }
    let id = format!("{}-{}", report.partnership, period.id);
    json!({
        "fullUrl": format!("urn:uuid:{}", report_uuid(report, &period.id)),
        "resource": {
            "resourceType": "MeasureReport",
            "id": id,
            "status": "complete",
            "type": "summary",
            "measure": format!("{FHIR_BASE}/Measure/partnership-sustainability|{}", report.methodology_version),
            "subject": { "reference": format!("Group/{}", report.partnership), "display": report.partnership },
            "date": now(),
            "period": { "start": period.start_date, "end": period.end_date },
            "group": groups,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> pb::PartnershipReport {
        pb::PartnershipReport {
            methodology_version: "1".into(),
            partnership: "pa".into(),
            period: Some(pb::ReportPeriod {
                id: "2026Q3".into(),
                start_date: "2026-07-01".into(),
                end_date: "2026-09-30".into(),
                ..Default::default()
            }),
            indicators: vec![
                pb::Indicator {
                    id: "leaver_rate_annualised".into(),
                    domain: "D1".into(),
                    scored: true,
                    value: Some(0.1),
                    score: Some(0.75),
                    records_used: 3,
                    ..Default::default()
                },
                pb::Indicator {
                    id: "vacancy".into(),
                    domain: "D1".into(),
                    scored: true,
                    missing_reason: pb::MissingReason::NoData as i32,
                    ..Default::default()
                },
            ],
            domains: vec![pb::DomainScore {
                domain: "D1".into(),
                title: "shared vision".into(),
                score: Some(0.75),
                weight: 1.0,
                ..Default::default()
            }],
            composite: Some(pb::Composite {
                psi: Some(62.5),
                band: pb::Band::Amber as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn long_rows_have_the_psi_each_domain_and_each_indicator_with_nulls_as_nulls() {
        let rows = rows(&report());
        assert_eq!(rows.len(), 4);
        assert_eq!(
            (rows[0].item_type, rows[0].item.as_str(), rows[0].band.as_deref()),
            ("index", "PSI", Some("amber"))
        );
        assert_eq!(
            (rows[1].item_type, rows[1].weight, rows[1].value, rows[1].score),
            ("domain", Some(1.0), None, Some(0.75))
        );
        assert_eq!(rows[3].value, None);
        assert_eq!(rows[3].missing_reason.as_deref(), Some("no_data"));
        assert_eq!(row_cells(&rows[2])[6], "0.1");
    }

    #[test]
    fn dhis2_leaves_out_missing_values_and_counts_unmapped_ones() {
        let mapping = Dhis2Mapping {
            data_elements: [("PSI".to_string(), "pmPsiIndex1".to_string())].into(),
            org_units: [("pa".to_string(), "OuPartnerA1".to_string())].into(),
            ..Default::default()
        };
        let (mut values, mut unmapped) = (Vec::new(), Unmapped::default());
        dhis2_values(&report(), &mapping, &mut values, &mut unmapped);
        assert_eq!(values.len(), 1);
        assert_eq!(values[0]["value"], "62.5");
        assert_eq!(values[0]["period"], "2026Q3");
        // D1 and the present indicator are unmapped; the missing one is not a value.
        assert_eq!(unmapped.values, 2);
        assert_eq!(unmapped.items.keys().collect::<Vec<_>>(), ["D1", "leaver_rate_annualised"]);
    }

    #[test]
    fn a_measure_report_names_its_measure_period_and_scores() {
        let e = fhir_entry(&report());
        let r = &e["resource"];
        assert_eq!(r["subject"]["reference"], "Group/pa");
        assert_eq!(r["period"]["end"], "2026-09-30");
        assert_eq!(r["group"][0]["measureScore"]["value"], 62.5);
        assert_eq!(r["group"][1]["stratifier"][0]["stratum"][0]["measureScore"]["value"], 0.75);
        assert!(r["group"][1]["stratifier"][0]["stratum"][1].get("measureScore").is_none());
        assert_eq!(e["fullUrl"], fhir_entry(&report())["fullUrl"], "stable ids");
    }
}
