//! `partnership-metrics report`: one partnership's report, as a readable table or as
//! the canonical protobuf JSON that `buf curl` prints.

use std::{collections::HashMap, fmt::Write};

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::{
    configuration::ReportArgs,
    pb::{self, indicator_input::Value, report_service_client::ReportServiceClient},
};

pub async fn run(args: ReportArgs) -> anyhow::Result<()> {
    let mut client =
        ReportServiceClient::new(args.client.connect().await?).max_decoding_message_size(64 << 20);
    let weights: HashMap<String, f64> = args
        .weight
        .iter()
        .map(|w| {
            let (d, v) = w.split_once('=').with_context(|| format!("--weight {w}: expected D1=2.5"))?;
            Ok((d.to_string(), v.parse().with_context(|| format!("--weight {w}: not a number"))?))
        })
        .collect::<anyhow::Result<_>>()?;
    let report = client
        .get_partnership_report(pb::GetPartnershipReportRequest {
            partnership: args.partnership.clone(),
            period: args.period.clone(),
            min_respondents: args.min_respondents,
            weights,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    if args.json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The canonical proto3 JSON of a report (field names in lowerCamelCase, enums by
/// name, 64-bit integers as strings), the same as any gRPC JSON tool prints.
pub fn to_json(report: &pb::PartnershipReport) -> anyhow::Result<String> {
    let pool =
        DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).context("loading the contract's descriptors")?;
    let descriptor = pool
        .get_message_by_name("partnership.v1.PartnershipReport")
        .context("PartnershipReport is not in the contract")?;
    let message = DynamicMessage::decode(descriptor, report.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&message)?)
}

fn number(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

fn missing(code: i32) -> &'static str {
    match pb::MissingReason::try_from(code) {
        Ok(pb::MissingReason::NoData) => "no data",
        Ok(pb::MissingReason::SuppressedSmallNumber) => "suppressed (few answers)",
        Ok(pb::MissingReason::NoMembers) => "no members",
        Ok(pb::MissingReason::InsufficientData) => "insufficient data",
        _ => "",
    }
}

fn band(code: i32) -> &'static str {
    match pb::Band::try_from(code) {
        Ok(pb::Band::Green) => "GREEN",
        Ok(pb::Band::Amber) => "AMBER",
        Ok(pb::Band::Red) => "RED",
        _ => "-",
    }
}

/// A report as a plain-text table: indicators grouped by domain, the index and its
/// band, alerts, the domains pulling the index down, coverage.
pub fn table(r: &pb::PartnershipReport) -> String {
    let mut out = String::new();
    let period = r.period.clone().unwrap_or_default();
    let c = r.composite.clone().unwrap_or_default();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "Partnership {} — {} ({} to {}), methodology v{}",
        r.partnership, period.id, period.start_date, period.end_date, r.methodology_version
    );
    let _ = writeln!(out, "Members ({}): {}", r.member_count, r.members.join(", "));
    let _ = writeln!(
        out,
        "\nPartnership Sustainability Index: {}  {}   (sensitivity {} .. {}, {})",
        number(c.psi),
        band(c.band),
        number(c.psi_min),
        number(c.psi_max),
        match c.band_stable {
            Some(true) => "band stable",
            Some(false) => "band NOT stable",
            None => missing(c.missing_reason),
        }
    );
    for d in &r.domains {
        let _ = writeln!(
            out,
            "\n{} {:<26} score {:>8}  weight {}  {}",
            d.domain,
            d.title,
            number(d.score),
            d.weight,
            missing(d.missing_reason)
        );
        for i in r.indicators.iter().filter(|i| i.domain == d.domain) {
            let status = if i.missing_reason != 0 {
                missing(i.missing_reason).to_string()
            } else if !i.scored {
                "reported".to_string()
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "   {:<30} value {:>9}  score {:>7}  {:<24} {}",
                i.id,
                number(i.value),
                number(i.score),
                status,
                i.explanation
            );
            for t in &i.trust_received_by_agency {
                let _ = writeln!(out, "      {:<27} {:.4} ({} ties)", t.agency, t.value, t.ties);
            }
            if i.inputs.iter().any(|x| matches!(x.value, Some(Value::BigIntValue(_)))) {
                let _ = writeln!(out, "      (inputs beyond 64 bits: see --json)");
            }
        }
    }
    if !c.top_drags.is_empty() {
        let drags: Vec<String> =
            c.top_drags.iter().map(|t| format!("{} ({:.4})", t.domain, t.term)).collect();
        let _ = writeln!(out, "\nPulling the index down most: {}", drags.join(", "));
    }
    let _ = writeln!(out, "\nAlerts:{}", if r.alerts.is_empty() { " none" } else { "" });
    for a in &r.alerts {
        let code = pb::AlertCode::try_from(a.code).map(|c| c.as_str_name()).unwrap_or("?");
        let _ = writeln!(out, "  {code}: {}", a.message);
    }
    if let Some(cov) = &r.coverage {
        let kinds: Vec<String> = cov
            .kinds
            .iter()
            .map(|k| {
                let name = pb::RecordKind::try_from(k.kind).map(|k| k.as_str_name()).unwrap_or("?");
                format!("{}={}", name.trim_start_matches("RECORD_KIND_").to_lowercase(), k.reporting_members)
            })
            .collect();
        let _ = writeln!(out, "\nCoverage (members reporting, of {}): {}", cov.members, kinds.join(" "));
    }
    out
}
