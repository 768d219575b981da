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

    /// The target "ratio to the anchor at least `min`"; unmet without an anchor.
    pub fn ratio_at_least(self, min: f64) -> Row {
        let met = Some(self.ratio.is_some_and(|r| r >= min));
        self.target(&format!(">= {min}"), met)
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
    // Large figures in whole units, small ones (MiB, ms) to two places.
    let decimals = |f: &Figure| if f.median.abs() >= 100.0 { 0 } else { 2 };
    for r in rows {
        let anchor = match (&r.anchor_name, &r.anchor) {
            (Some(name), Some(a)) => format!("{name}: {} {}", a.cell(decimals(a)), r.unit),
            _ => "—".to_string(),
        };
        let extra: Vec<String> = r.extra.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let extra = if extra.is_empty() { String::new() } else { format!(" ({})", extra.join(", ")) };
        out.push_str(&format!(
            "| {} | {} {}{} | {} | {} | {} | {} |\n",
            r.measurement,
            r.value.cell(decimals(&r.value)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_is_the_median_of_its_runs_with_min_and_max() {
        let odd = Figure::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(Figure::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert!(Figure::of(Vec::new()).median.is_nan());
    }

    #[test]
    fn a_ratio_target_is_met_only_at_or_above_it_and_only_with_an_anchor() {
        let row = |value: f64, anchor: Option<f64>| {
            let r = Row::new("m", "records/s", Figure::of(vec![value]));
            match anchor {
                Some(a) => r.anchor("a", Figure::of(vec![a])),
                None => r,
            }
            .ratio_at_least(0.5)
        };
        assert_eq!(row(50.0, Some(100.0)).met, Some(true));
        assert_eq!(row(49.0, Some(100.0)).met, Some(false));
        assert_eq!(row(50.0, None).met, Some(false));
        assert_eq!(row(50.0, Some(100.0)).target, ">= 0.5");
        assert!(markdown(&[row(49.0, Some(100.0))]).contains("| 0.49 | >= 0.5 | **no** |"));
    }
}
