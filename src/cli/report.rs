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
    let weights = parse_weights(&args.weight)?;
    let report = client
        .get_partnership_report(pb::GetPartnershipReportRequest {
            partnership: args.partnership.clone(),
            period: args.period.clone(),
            min_respondents: args.min_respondents,
            weights,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", super::client::describe(&s)))?
        .into_inner();
    if args.json || args.format == crate::configuration::ReportFormat::Json {
        println!("{}", to_json(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// `--weight D4=2` flags as the request's map.
pub fn parse_weights(flags: &[String]) -> anyhow::Result<HashMap<String, f64>> {
    flags
        .iter()
        .map(|w| {
            let (d, v) = w.split_once('=').with_context(|| format!("--weight {w}: expected D1=2.5"))?;
            Ok((d.to_string(), v.parse().with_context(|| format!("--weight {w}: not a number"))?))
        })
        .collect()
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

/// Prose from the server made easy to read: long decimals rounded to four places,
/// amounts in pence as pounds. (The JSON output keeps every figure exact.)
pub fn readable(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        // `A of B pence` and `A pence`: the amounts as pounds.
        if words.get(i + 1) == Some(&"of")
            && words.get(i + 3).is_some_and(|p| p.starts_with("pence"))
            && let (Ok(a), Ok(b)) = (w.parse::<i128>(), words[i + 2].parse::<i128>())
        {
            out.push(format!("{} of {}{}", pounds(a), pounds(b), words[i + 3].trim_start_matches("pence")));
            i += 4;
            continue;
        }
        if words.get(i + 1).is_some_and(|p| p.starts_with("pence"))
            && let Ok(a) = w.parse::<i128>()
        {
            out.push(format!("{}{}", pounds(a), words[i + 1].trim_start_matches("pence")));
            i += 2;
            continue;
        }
        out.push(round_decimals(w));
        i += 1;
    }
    out.join(" ")
}

/// A word holding a number with more than four decimals, rounded to four (trailing
/// punctuation kept).
fn round_decimals(word: &str) -> String {
    let end = word.trim_end_matches([')', ',', '.', ';', ':']).len();
    let (number, rest) = word.split_at(end);
    let start = number.find(|c: char| c.is_ascii_digit() || c == '-').unwrap_or(number.len());
    let (lead, digits) = number.split_at(start);
    match (digits.split_once('.'), digits.parse::<f64>()) {
        (Some((_, decimals)), Ok(v))
            if decimals.len() > 4 && decimals.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{lead}{v:.4}{rest}")
        }
        _ => word.to_string(),
    }
}

/// Pence as pounds: `£53,292.93`.
pub fn pounds(pence: i128) -> String {
    let sign = if pence < 0 { "-" } else { "" };
    let p = pence.unsigned_abs();
    let whole = (p / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}£{grouped}.{:02}", p % 100)
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
                readable(&i.explanation)
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
        let _ = writeln!(out, "  {}: {}", code.trim_start_matches("ALERT_CODE_"), readable(&a.message));
    }
    if let Some(cov) = &r.coverage {
        let _ = writeln!(
            out,
            "\nCoverage: of the {} members, how many reported each kind of record counting for {} \
             (period within it; adoptions, endorsements and events dated in it; contracts overlapping it):",
            cov.members, period.id
        );
        for k in &cov.kinds {
            let name = pb::RecordKind::try_from(k.kind).map(|k| k.as_str_name()).unwrap_or("?");
            let label = name.trim_start_matches("RECORD_KIND_").to_lowercase().replace('_', " ");
            let _ = writeln!(out, "   {label:<24} {} of {}", k.reporting_members, cov.members);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_reads_in_pounds_and_short_decimals() {
        assert_eq!(
            readable("5329293 of 46143186 pence in scope is pooled (7 agencies)"),
            "£53,292.93 of £461,431.86 in scope is pooled (7 agencies)"
        );
        assert_eq!(
            readable(
                "budgets are pooled (share 0.11549469080873609) while only 0.2857142857142857 of members endorse"
            ),
            "budgets are pooled (share 0.1155) while only 0.2857 of members endorse"
        );
        assert_eq!(readable("mean of 23 answers (1 to 5)"), "mean of 23 answers (1 to 5)");
        assert_eq!(readable("gap 0.5 and -1.234567,"), "gap 0.5 and -1.2346,");
        assert_eq!(pounds(5), "£0.05");
        assert_eq!(pounds(123_456_789), "£1,234,567.89");
        assert_eq!(pounds(-100), "-£1.00");
    }
}
