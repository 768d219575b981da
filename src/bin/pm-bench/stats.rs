//! Figures, their runs and their anchors, as JSON and as a Markdown table.

use serde::Serialize;

/// A measured quantity over several runs.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Figure {
    pub fn of(mut runs: Vec<f64>) -> Figure {
        runs.sort_by(f64::total_cmp);
        let n = runs.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            runs[n / 2]
        } else {
            (runs[n / 2 - 1] + runs[n / 2]) / 2.0
        };
        Figure {
            median,
            min: runs.first().copied().unwrap_or(f64::NAN),
            max: runs.last().copied().unwrap_or(f64::NAN),
            runs,
        }
    }

    pub fn cell(&self, decimals: usize) -> String {
        if self.runs.len() <= 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!("{:.*} ({:.*}–{:.*})", decimals, self.median, decimals, self.min, decimals, self.max)
        }
    }
}

/// One row of the results: a figure beside its anchor.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub measurement: String,
    pub unit: String,
    pub value: Figure,
    pub anchor_name: Option<String>,
    pub anchor: Option<Figure>,
    /// value / anchor (medians), where there is an anchor.
    pub ratio: Option<f64>,
    pub target: String,
    /// Whether the target is met; `None` when it cannot be judged by a number here.
    pub met: Option<bool>,
    pub extra: Vec<(String, String)>,
}

impl Row {
    pub fn new(measurement: impl Into<String>, unit: &str, value: Figure) -> Row {
        Row {
            measurement: measurement.into(),
            unit: unit.to_string(),
            value,
            anchor_name: None,
            anchor: None,
            ratio: None,
            target: String::new(),
            met: None,
            extra: Vec::new(),
        }
    }

    pub fn anchor(mut self, name: &str, anchor: Figure) -> Row {
        self.ratio = Some(self.value.median / anchor.median);
        self.anchor_name = Some(name.to_string());
        self.anchor = Some(anchor);
        self
    }

    pub fn target(mut self, target: &str, met: Option<bool>) -> Row {
        self.target = target.to_string();
        self.met = met;
        self
    }

    pub fn note(mut self, key: &str, value: impl ToString) -> Row {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }
}

pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | value (median, min–max) | anchor in the same run | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let decimals = if r.value.median.abs() >= 100.0 { 0 } else { 2 };
        let anchor = match (&r.anchor_name, &r.anchor) {
            (Some(name), Some(a)) => {
                format!("{name}: {} {}", a.cell(if a.median.abs() >= 100.0 { 0 } else { 2 }), r.unit)
            }
            _ => "—".to_string(),
        };
        let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
        out.push_str(&format!(
            "| {} | {} {}{} | {} | {} | {} | {} |\n",
            r.measurement,
            r.value.cell(decimals),
            r.unit,
            extra,
            anchor,
            r.ratio.map_or("—".to_string(), |x| format!("{x:.2}")),
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        ));
    }
    out
}
