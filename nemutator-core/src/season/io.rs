//! Reading series from CSV and writing `nemutator season` reports.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::profile::{Prediction, SeasonProfile};
use super::{Sample, SeasonError};

/// Reads `timestamp,value` CSV: a header line `timestamp,value`, then one
/// sample per line, timestamp in unix seconds (a fractional part is
/// truncated). Blank lines are skipped; `NaN` values are read as missing
/// samples and skipped; infinite values are errors. Errors are one line and
/// name the 1-based line number, e.g. `line 3: bad value "abc"`.
pub fn parse_series_csv(text: &str) -> Result<Vec<Sample>, SeasonError> {
    let err = |line: usize, message: String| SeasonError::Csv { line, message };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    let header = lines.by_ref().find(|(_, l)| !l.is_empty());
    let Some((hline, header)) = header else {
        return Err(err(
            1,
            "empty input: expected the header \"timestamp,value\"".into(),
        ));
    };
    let header = header.trim_start_matches('\u{feff}');
    let cols: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    if cols != ["timestamp", "value"] {
        return Err(err(
            hline,
            format!(
                "expected the header \"timestamp,value\", found {:?}",
                shorten(header)
            ),
        ));
    }
    let mut out = Vec::new();
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [ts, val] = fields.as_slice() else {
            return Err(err(
                n,
                format!(
                    "expected 2 fields \"timestamp,value\", found {}",
                    fields.len()
                ),
            ));
        };
        let timestamp = parse_timestamp(ts)
            .ok_or_else(|| err(n, format!("bad timestamp {:?}", shorten(ts))))?;
        let value: f64 = val
            .parse()
            .map_err(|_| err(n, format!("bad value {:?}", shorten(val))))?;
        if value.is_nan() {
            continue;
        }
        if value.is_infinite() {
            return Err(err(n, format!("value {:?} is not finite", shorten(val))));
        }
        out.push((timestamp, value));
    }
    Ok(out)
}

/// Unix seconds from an integer or decimal field (fraction truncated).
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Some(t);
    }
    let f: f64 = s.parse().ok()?;
    // Excludes NaN, infinities and values outside i64.
    if f.is_finite() && f > -9.2e18 && f < 9.2e18 {
        Some(f.trunc() as i64)
    } else {
        None
    }
}

/// At most 40 characters of `s`, for error messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// The `nemutator season --output json` document:
/// `{"periods": [seconds...], "peak_windows": [{"period","start","end"}...],
/// "predictions": [{"timestamp","season","forecast"}...]}`.
pub fn season_report_json(profile: &SeasonProfile, predictions: &[Prediction]) -> Value {
    json!({
        "periods": profile.periods(),
        "peak_windows": profile.peak_windows(),
        "predictions": predictions,
    })
}

/// The `nemutator season --output csv` document: the header
/// `timestamp,season,forecast`, then one line per prediction.
pub fn predictions_csv(predictions: &[Prediction]) -> String {
    let mut out = String::with_capacity(32 * (predictions.len() + 1));
    out.push_str("timestamp,season,forecast\n");
    for p in predictions {
        let _ = writeln!(out, "{},{},{}", p.timestamp, p.season, p.forecast);
    }
    out
}
