//! A streaming reader of the OpenMetrics text format, as far as
//! `promtool tsdb create-blocks-from openmetrics` reads it: `# TYPE`, `# HELP`,
//! `# UNIT` and `# EOF` lines, and samples `name{label="value",...} value
//! [timestamp]` with timestamps in seconds.
//!
//! Errors name the line and say what is wrong in one line. Timestamps that look
//! like milliseconds are rejected (promtool takes them and files the samples
//! in the year 58000).

use std::borrow::Cow;

/// Timestamps above this (year 5138 in seconds) are taken to be milliseconds.
const MAX_SECONDS: f64 = 1e11;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Metric name.
    pub name: &'a str,
    /// Labels in file order.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// Value.
    pub value: f64,
    /// Timestamp in seconds, if given.
    pub timestamp: Option<f64>,
}

impl Sample<'_> {
    /// The value of a label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A line that is not OpenMetrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Call `sink` for every sample of `text`, in order. Stops at `# EOF`.
/// Returns whether `# EOF` was seen.
pub fn parse<'a>(text: &'a str, mut sink: impl FnMut(Sample<'a>)) -> Result<bool, ParseError> {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if comment == "EOF" {
                return Ok(true);
            }
            let keyword = comment.split_whitespace().next().unwrap_or_default();
            match keyword {
                "TYPE" | "HELP" | "UNIT" => continue,
                // Plain comments are a Prometheus-text habit; tolerate them.
                _ => continue,
            }
        }
        sink(parse_sample(line).map_err(err)?);
    }
    Ok(false)
}

fn is_name_char(c: char, first: bool) -> bool {
    c == '_' || c == ':' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
}

fn parse_sample(line: &str) -> Result<Sample<'_>, String> {
    let name_end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map(|(i, _)| i)
        .unwrap_or(line.len());
    if name_end == 0 {
        return Err(format!("expected a metric name at {:?}", truncate(line)));
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_s = fields
        .next()
        .ok_or_else(|| format!("{name}: missing value"))?;
    let value = parse_float(value_s).ok_or_else(|| format!("{name}: invalid value {value_s:?}"))?;
    let timestamp = match fields.next() {
        None | Some("#") => None,
        Some(ts) => {
            let t = parse_float(ts)
                .filter(|t| t.is_finite())
                .ok_or_else(|| format!("{name}: invalid timestamp {ts:?}"))?;
            if t.abs() > MAX_SECONDS {
                return Err(format!(
                    "{name}: timestamp {ts} looks like milliseconds; OpenMetrics timestamps are seconds"
                ));
            }
            Some(t)
        }
    };
    match fields.next() {
        None | Some("#") => {}
        Some(extra) => return Err(format!("{name}: unexpected {extra:?} after the timestamp")),
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parse `k="v",...}` and return what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    out: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let eq = s.find('=').ok_or("label without '='")?;
        let key = s[..eq].trim();
        if key.is_empty()
            || !key
                .chars()
                .enumerate()
                .all(|(i, c)| is_name_char(c, i == 0) && c != ':')
        {
            return Err(format!("invalid label name {:?}", truncate(key)));
        }
        s = s[eq + 1..].trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {key}: value must be quoted"))?;
        // Find the closing quote, honouring escapes.
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut escaped = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => {
                    escaped = true;
                    i += 2;
                    continue;
                }
                b'"' => break,
                _ => i += 1,
            }
        }
        if i >= bytes.len() {
            return Err(format!("label {key}: unterminated value"));
        }
        let raw = &s[..i];
        let value = if escaped {
            Cow::Owned(unescape(raw)?)
        } else {
            Cow::Borrowed(raw)
        };
        out.push((key, value));
        s = s[i + 1..].trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(format!("label {key}: expected ',' or '}}'"));
        }
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            other => return Err(format!("invalid escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(text: &str) -> Result<Vec<Sample<'_>>, ParseError> {
        let mut v = Vec::new();
        parse(text, |s| v.push(s))?;
        Ok(v)
    }

    #[test]
    fn reads_cadvisor_samples() {
        let text = "# TYPE container_cpu_usage_seconds counter\n\
            container_cpu_usage_seconds_total{namespace=\"ns\",pod=\"web-1\",container=\"app\"} 12.5 1700000000\n\
            container_memory_working_set_bytes{namespace=\"ns\", pod=\"web-1\", container=\"app\"} 1.5e8 1700000060.5\n\
            # EOF\n\
            ignored{} 1 1\n";
        let v = all(text).unwrap_or_default();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(v[0].label("pod"), Some("web-1"));
        assert_eq!(v[0].value, 12.5);
        assert_eq!(v[0].timestamp, Some(1_700_000_000.0));
        assert_eq!(v[1].value, 1.5e8);
        assert_eq!(v[1].label("container"), Some("app"));
    }

    #[test]
    fn escapes_and_specials() {
        let v = all("m{a=\"x\\\"y\\\\z\\n\"} NaN\nm +Inf 1\n").unwrap_or_default();
        assert_eq!(v[0].label("a"), Some("x\"y\\z\n"));
        assert!(v[0].value.is_nan());
        assert_eq!(v[0].timestamp, None);
        assert_eq!(v[1].value, f64::INFINITY);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("m 1 1\nm{a=\"1} 2 3\n", 2, "unterminated"),
            ("m abc 1\n", 1, "invalid value"),
            ("m 1 1700000000000\n", 1, "milliseconds"),
            ("m{a=1} 1 1\n", 1, "quoted"),
            ("{a=\"1\"} 1 1\n", 1, "metric name"),
            ("m 1 1 extra\n", 1, "unexpected"),
            ("m\n", 1, "missing value"),
        ];
        for (text, line, needle) in cases {
            let e = all(text).expect_err(text);
            assert_eq!(e.line, line, "{text}");
            assert!(e.to_string().contains(needle), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = all(&s);
        }

        #[test]
        fn label_values_round_trip(v in "[ -~]{0,20}") {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            let text = format!("m{{l=\"{escaped}\"}} 1 2\n");
            let got = all(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got[0].label("l"), Some(v.as_str()));
        }
    }
}
