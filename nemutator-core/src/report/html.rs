//! `nemutator recommend --output html`: one self-contained page (no script,
//! no external stylesheet, font or image; the charts are inline SVG) with a
//! small chart per workload container and resource, then the table.
//!
//! A chart draws the usage distribution of the window (the per-step maxima
//! across the workload's pods, at the quantiles of
//! [`crate::recommend::DISTRIBUTION`]: a percentile curve) against the
//! current request (dashed, when the source knows it) and the recommended
//! request of every season. Hovering a point or a line shows its value
//! (SVG `<title>`).

use std::fmt::Write as _;

use super::{escape_markup, row, HEADERS};
use crate::metrics::Resource;
use crate::recommend::Recommendation;
use crate::workload::ContainerRef;

/// Width and height of a chart, and its plot area inside.
const W: f64 = 300.0;
const H: f64 = 160.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 290.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 132.0;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-top:2em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}\
th{background:#f4f4f4}.charts{display:flex;flex-wrap:wrap;gap:1em}\
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:.5em}\
figcaption{font-size:.9em;margin-bottom:.3em}svg{display:inline-block}\
svg text{font-size:10px;fill:#444}.axis{stroke:#888}.usage{fill:none;stroke:#555;stroke-width:1.5}\
.point{fill:#555}.current{stroke:#c0392b;stroke-dasharray:4 3}\
.rec{stroke:#1f6feb;stroke-width:2}.rec.peak{stroke:#d97706}.rec.off-peak{stroke:#059669}\
.legend span{margin-right:1.2em;font-size:.85em}";

/// The page.
pub fn html(recs: &[Recommendation]) -> String {
    let mut out = String::with_capacity(4096 + recs.len() * 3072);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<title>nemutator recommendations</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body>\n<h1>nemutator recommendations</h1>\n");
    out.push_str(
        "<p class=\"legend\"><span>&#9472; usage percentiles of the window (per-step maximum across the workload&#39;s pods)</span>\
<span style=\"color:#c0392b\">- - current request</span>\
<span style=\"color:#1f6feb\">&#9472; recommended request</span>\
<span style=\"color:#d97706\">&#9472; peak</span><span style=\"color:#059669\">&#9472; off-peak</span></p>\n",
    );
    let groups = by_container(recs);
    let _ = writeln!(
        out,
        "<p>{} workload containers, {} recommendations.</p>\n<div class=\"charts\">",
        groups.len(),
        recs.len()
    );
    for (target, recs) in &groups {
        let w = &target.workload;
        let _ = write!(
            out,
            "<figure><figcaption>{} / {} / <b>{}</b> / {}</figcaption>",
            escape_markup(&w.namespace),
            w.kind.as_str(),
            escape_markup(&w.name),
            escape_markup(&target.container)
        );
        for resource in Resource::ALL {
            chart(&mut out, resource, recs);
        }
        out.push_str("</figure>\n");
    }
    out.push_str("</div>\n<table>\n<tr>");
    for h in HEADERS {
        let _ = write!(out, "<th>{h}</th>");
    }
    out.push_str("</tr>\n");
    for r in recs.iter().map(row) {
        out.push_str("<tr>");
        for cell in r {
            let _ = write!(out, "<td>{}</td>", escape_markup(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// Recommendations grouped by container, in the order they come.
fn by_container(recs: &[Recommendation]) -> Vec<(&ContainerRef, Vec<&Recommendation>)> {
    let mut groups: Vec<(&ContainerRef, Vec<&Recommendation>)> = Vec::new();
    for rec in recs {
        match groups.iter_mut().find(|(t, _)| *t == &rec.target) {
            Some((_, v)) => v.push(rec),
            None => groups.push((&rec.target, vec![rec])),
        }
    }
    groups
}

/// A value to read at a glance: millicores or cores, MiB or GiB.
fn fmt_value(resource: Resource, v: f64) -> String {
    let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
    let trim = |s: String| match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => s,
    };
    const MI: f64 = 1024.0 * 1024.0;
    match resource {
        Resource::Cpu if v >= 1.0 => trim(format!("{v:.2}")),
        Resource::Cpu => format!("{:.0}m", v * 1000.0),
        Resource::Memory if v >= 1024.0 * MI => trim(format!("{:.2}", v / (1024.0 * MI))) + "Gi",
        Resource::Memory if v >= MI => trim(format!("{:.1}", v / MI)) + "Mi",
        Resource::Memory => trim(format!("{:.1}", v / 1024.0)) + "Ki",
    }
}

/// One chart: a resource of one container, every season's recommendation.
fn chart(out: &mut String, resource: Resource, recs: &[&Recommendation]) {
    let parts: Vec<_> = recs
        .iter()
        .filter_map(|r| Some((r.season, r.resource(resource)?)))
        .collect();
    // The distribution and current request are the window's, the same for
    // every season: the first that has them.
    let dist = parts
        .iter()
        .map(|(_, r)| r.distribution.as_slice())
        .find(|d| !d.is_empty())
        .unwrap_or_default();
    let current = parts
        .iter()
        .find_map(|(_, r)| r.current)
        .map(|q| q.as_f64());
    let top = dist
        .iter()
        .map(|p| p.1)
        .chain(current)
        .chain(parts.iter().map(|(_, r)| r.request.as_f64()))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let x = |q: f64| LEFT + (RIGHT - LEFT) * q.clamp(0.0, 1.0);
    let y = |v: f64| BOTTOM - (BOTTOM - TOP) * (v / top).clamp(0.0, 1.0);
    let _ = write!(
        out,
        "<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{resource}\">\
<text x=\"{LEFT}\" y=\"12\" font-weight=\"bold\">{resource}</text>\
<line class=\"axis\" x1=\"{LEFT}\" y1=\"{BOTTOM}\" x2=\"{RIGHT}\" y2=\"{BOTTOM}\"/>\
<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{BOTTOM}\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{BOTTOM}\" text-anchor=\"end\">0</text>\
<text x=\"{LEFT}\" y=\"146\">p0</text><text x=\"{}\" y=\"146\" text-anchor=\"middle\">p50</text>\
<text x=\"{RIGHT}\" y=\"146\" text-anchor=\"end\">p100</text>\
<text x=\"{}\" y=\"157\" text-anchor=\"middle\">percentile of the window</text>",
        LEFT - 4.0,
        TOP + 4.0,
        escape_markup(&fmt_value(resource, top)),
        LEFT - 4.0,
        x(0.5),
        x(0.5),
    );
    if parts.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no recommendation</text></svg>",
            x(0.5),
            (TOP + BOTTOM) / 2.0
        );
        return;
    }
    if !dist.is_empty() {
        let points: Vec<String> = dist
            .iter()
            .map(|&(q, v)| format!("{:.1},{:.1}", x(q), y(v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"usage\" points=\"{}\"/>",
            points.join(" ")
        );
        for &(q, v) in dist {
            let _ = write!(
                out,
                "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"><title>p{} usage {}</title></circle>",
                x(q),
                y(v),
                q * 100.0,
                escape_markup(&fmt_value(resource, v))
            );
        }
    }
    if let Some(c) = current {
        let _ = write!(
            out,
            "<line class=\"current\" x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{RIGHT}\" y2=\"{0:.1}\"><title>current request {1}</title></line>\
<text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">now {1}</text>",
            y(c),
            escape_markup(&fmt_value(resource, c)),
            RIGHT - 2.0,
            y(c) - 3.0,
        );
    }
    for (season, r) in &parts {
        let (class, label, short) = match season {
            Some(s) => (format!("rec {s}"), format!("{s}: recommended"), s.as_str()),
            None => ("rec".to_string(), "recommended".to_string(), "rec"),
        };
        let text = format!(
            "{label} {} (p{} + headroom)",
            resource.quantity_string(r.request),
            r.percentile
        );
        let _ = write!(
            out,
            "<line class=\"{class}\" x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{RIGHT}\" y2=\"{0:.1}\"><title>{1}</title></line>\
<circle class=\"point\" cx=\"{2:.1}\" cy=\"{3:.1}\" r=\"3\"><title>p{4} usage {5}</title></circle>\
<text x=\"{6}\" y=\"{7:.1}\">{8} {9}</text>",
            y(r.request.as_f64()),
            escape_markup(&text),
            x(r.percentile / 100.0),
            y(r.usage),
            r.percentile,
            escape_markup(&fmt_value(resource, r.usage)),
            LEFT + 3.0,
            y(r.request.as_f64()) - 3.0,
            short,
            escape_markup(&resource.quantity_string(r.request)),
        );
    }
    if dist.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no distribution</text>",
            x(0.5),
            (TOP + BOTTOM) / 2.0
        );
    }
    out.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::Quantity;
    use crate::recommend::ResourceRecommendation;
    use crate::season::Season;
    use crate::units::HumanDuration;
    use crate::workload::{WorkloadKey, WorkloadKind};

    fn mk_res(request: f64, usage: f64, current: Option<f64>) -> ResourceRecommendation {
        ResourceRecommendation {
            request: Quantity::from_f64_units(request),
            percentile: 95.0,
            usage,
            samples: 24,
            history_secs: 86_400,
            oom_killed: false,
            current: current.map(Quantity::from_f64_units),
            distribution: crate::recommend::DISTRIBUTION
                .iter()
                .map(|&q| (q, usage * (0.5 + q / 2.0)))
                .collect(),
        }
    }

    fn mk_rec(name: &str, container: &str, season: Option<Season>) -> Recommendation {
        Recommendation {
            target: ContainerRef::new(
                WorkloadKey::new("shop", WorkloadKind::Deployment, name),
                container,
            ),
            policy: "default".into(),
            season,
            window: HumanDuration::from_secs(604_800),
            cpu: Some(mk_res(0.3, 0.25, Some(1.0))),
            memory: Some(mk_res(512.0 * 1048576.0, 400.0 * 1048576.0, None)),
            skipped: Vec::new(),
        }
    }

    /// Every element closed in order (void elements aside): the page is
    /// well-formed.
    fn balanced(page: &str) -> Result<usize, String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut elements = 0;
        let mut rest = page;
        while let Some(at) = rest.find('<') {
            rest = &rest[at + 1..];
            let end = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap_or_default();
            if tag.starts_with('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') && name != "meta" {
                stack.push(name);
                elements += 1;
            }
        }
        match stack.is_empty() {
            true => Ok(elements),
            false => Err(format!("unclosed {stack:?}")),
        }
    }

    #[test]
    fn one_chart_per_container_and_resource() {
        let recs = vec![
            mk_rec("api", "app", Some(Season::Peak)),
            mk_rec("api", "app", Some(Season::OffPeak)),
            mk_rec("web", "app", None),
        ];
        let page = html(&recs);
        assert!(page.starts_with("<!doctype html>"));
        assert!(
            balanced(&page).is_ok_and(|n| n > 20),
            "{:?}",
            balanced(&page)
        );
        assert_eq!(page.matches("<figure>").count(), 2, "one per container");
        assert_eq!(page.matches("<svg ").count(), 4, "one per resource");
        assert_eq!(page.matches("<polyline").count(), 4);
        // Seasons share a chart; each has its line.
        assert!(page.contains("class=\"rec peak\"") && page.contains("class=\"rec off-peak\""));
        assert_eq!(page.matches("class=\"rec\"").count(), 2);
        assert_eq!(page.matches("class=\"current\"").count(), 2, "CPU only");
        assert!(page.contains("<title>current request 1</title>"), "{page}");
        assert!(page.contains(">now 1</text>"));
        assert!(page.contains("recommended 300m (p95 + headroom)"));
        assert!(page.contains("<td>300m (p95)</td>"), "the table");
    }

    #[test]
    fn values_read_at_a_glance() {
        assert_eq!(fmt_value(Resource::Cpu, 0.2504), "250m");
        assert_eq!(fmt_value(Resource::Cpu, 1.5), "1.5");
        assert_eq!(fmt_value(Resource::Memory, 81_116_007.0), "77.4Mi");
        assert_eq!(fmt_value(Resource::Memory, 2.0 * 1024.0 * 1048576.0), "2Gi");
        assert_eq!(fmt_value(Resource::Memory, f64::NAN), "0Ki");
    }

    #[test]
    fn self_contained() {
        let page = html(&[mk_rec("web", "app", None)]);
        for needle in [
            "<script", "http:", "https:", "src=", "href=", "url(", "@import",
        ] {
            assert!(!page.contains(needle), "{needle}");
        }
    }

    #[test]
    fn names_are_escaped() {
        let page = html(&[mk_rec("<script>alert('x')</script>", "a&\"b", None)]);
        assert!(!page.contains("<script"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("a&amp;&quot;b"));
        assert!(balanced(&page).is_ok());
    }

    #[test]
    fn charts_without_data_say_so() {
        let mut rec = mk_rec("web", "app", None);
        rec.memory = None;
        if let Some(cpu) = rec.cpu.as_mut() {
            cpu.distribution.clear();
        }
        let page = html(&[rec]);
        assert!(page.contains("no recommendation") && page.contains("no distribution"));
        assert!(balanced(&page).is_ok());
        assert!(html(&[]).contains("0 workload containers"));
    }
}
