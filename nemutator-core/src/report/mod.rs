//! Recommendation reports: aligned table, CSV and a self-contained HTML page
//! with a chart per workload container ([`html`]; JSON is the `Serialize`
//! of [`Recommendation`]). Requests are written as in
//! a pod spec in all of them (`250m`, `640Mi`).

use std::fmt::Write as _;

mod html;
pub use html::html;

use crate::metrics::Resource;
use crate::recommend::Recommendation;
use crate::units::HumanDuration;

const HEADERS: [&str; 9] = [
    "NAMESPACE",
    "KIND",
    "WORKLOAD",
    "CONTAINER",
    "CPU",
    "MEMORY",
    "HISTORY",
    "POLICY",
    "NOTE",
];

fn fmt_res(rec: &Recommendation, r: Resource) -> String {
    match rec.resource(r) {
        None => "-".into(),
        Some(x) => format!("{} (p{})", r.quantity_string(x.request), x.percentile),
    }
}

fn row(rec: &Recommendation) -> [String; 9] {
    let history = rec
        .cpu
        .as_ref()
        .or(rec.memory.as_ref())
        .map(|x| HumanDuration::from_secs(x.history_secs.max(0) as u64).to_string())
        .unwrap_or_else(|| "-".into());
    let w = &rec.target.workload;
    [
        w.namespace.clone(),
        w.kind.as_str().to_string(),
        w.name.clone(),
        rec.target.container.clone(),
        fmt_res(rec, Resource::Cpu),
        fmt_res(rec, Resource::Memory),
        history,
        match rec.season {
            Some(s) => format!("{}/{s}", rec.policy),
            None => rec.policy.clone(),
        },
        rec.skipped.join("; "),
    ]
}

/// An aligned text table.
pub fn table(recs: &[Recommendation]) -> String {
    let rows: Vec<[String; 9]> = recs.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEADERS);
    for r in &rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// CSV with a header; quantities in Kubernetes notation, usage in cores/bytes.
pub fn csv(recs: &[Recommendation]) -> String {
    let mut out = String::from(
        "namespace,kind,workload,container,cpu_request,cpu_percentile,cpu_usage_cores,memory_request,memory_percentile,memory_usage_bytes,history_seconds,policy,season,note\n",
    );
    for rec in recs {
        let res = |r: Resource| match rec.resource(r) {
            None => (String::new(), String::new(), String::new()),
            Some(x) => (
                r.quantity_string(x.request),
                x.percentile.to_string(),
                format!("{:.6}", x.usage),
            ),
        };
        let (c, cp, cu) = res(Resource::Cpu);
        let (m, mp, mu) = res(Resource::Memory);
        let history = rec
            .cpu
            .as_ref()
            .or(rec.memory.as_ref())
            .map(|x| x.history_secs.to_string())
            .unwrap_or_default();
        let w = &rec.target.workload;
        let fields = [
            w.namespace.as_str(),
            w.kind.as_str(),
            &w.name,
            &rec.target.container,
            &c,
            &cp,
            &cu,
            &m,
            &mp,
            &mu,
            &history,
            &rec.policy,
            rec.season.map(|s| s.as_str()).unwrap_or(""),
            &rec.skipped.join("; "),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Escape text for HTML, XML and SVG, in element content and in quoted
/// attributes alike: `&`, `<`, `>`, `"` and `'` become references, and
/// control characters XML does not allow (all below U+0020 except tab, line
/// feed and carriage return) become spaces. Used by every page and picture
/// nemutator draws (this table, the season heatmap, flamegraphs).
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::Quantity;
    use crate::recommend::ResourceRecommendation;
    use crate::workload::{ContainerRef, WorkloadKey, WorkloadKind};

    fn mk_rec() -> Recommendation {
        Recommendation {
            target: ContainerRef::new(
                WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
                "app",
            ),
            policy: "default".into(),
            season: None,
            window: HumanDuration::from_secs(604_800),
            cpu: Some(ResourceRecommendation {
                request: Quantity::from_millis(250),
                percentile: 95.0,
                usage: 0.2,
                samples: 10,
                history_secs: 86_400,
                oom_killed: false,
                current: None,
                distribution: Vec::new(),
            }),
            memory: None,
            skipped: vec!["memory: no samples, \"x\"".into()],
        }
    }

    #[test]
    fn table_aligns_and_shows_requests() {
        let t = table(&[mk_rec()]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(lines[1].contains("250m (p95)"));
        assert_eq!(lines[0].find("KIND"), lines[1].find("Deployment"));
    }

    #[test]
    fn csv_quotes_fields() {
        let c = csv(&[mk_rec()]);
        assert!(c
            .lines()
            .nth(1)
            .unwrap_or_default()
            .starts_with("ns,Deployment,web,app,250m,95,0.200000,,,,86400,default,,"));
        assert!(c.contains("\"memory: no samples, \"\"x\"\"\""));
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("a<b>&\"c\" 'd'\t\n\u{1}é"),
            "a&lt;b&gt;&amp;&quot;c&quot; &#39;d&#39;\t\n é"
        );
    }
}
