//! The week as a heat map: mean load by hour (x) and weekday (y), with the
//! peak windows outlined. Self-contained SVG or HTML, no external resources.

use std::fmt::Write as _;

use super::prep::EPOCH_MONDAY;
use super::profile::SeasonProfile;
use super::Sample;
use crate::report::escape_markup;

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const CELL_W: f64 = 28.0;
const CELL_H: f64 = 26.0;
const LEFT: f64 = 48.0;
const TOP: f64 = 44.0;

/// Mean of the series per (weekday, hour) in UTC; `None` where no sample fell.
fn week_grid(series: &[Sample]) -> [[Option<f64>; 24]; 7] {
    let mut sum = [[0.0_f64; 24]; 7];
    let mut cnt = [[0.0_f64; 24]; 7];
    for &(t, v) in series {
        if !v.is_finite() {
            continue;
        }
        let since = t as i128 - EPOCH_MONDAY as i128;
        let day = since.div_euclid(DAY as i128).rem_euclid(7) as usize;
        let hour = (since.rem_euclid(DAY as i128) / 3600) as usize;
        if let (Some(s), Some(c)) = (
            sum.get_mut(day).and_then(|r| r.get_mut(hour)),
            cnt.get_mut(day).and_then(|r| r.get_mut(hour)),
        ) {
            *c += 1.0;
            // Running mean: cannot overflow for finite inputs.
            *s += (v - *s) / *c;
        }
    }
    let mut out = [[None; 24]; 7];
    for d in 0..7 {
        for h in 0..24 {
            if cnt[d][h] > 0.0 {
                out[d][h] = Some(sum[d][h]);
            }
        }
    }
    out
}

/// Sequential colour from pale yellow (0) to dark red (1).
fn colour(f: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (255.0, 255.0, 204.0),
        (254.0, 204.0, 92.0),
        (253.0, 141.0, 60.0),
        (227.0, 26.0, 28.0),
        (128.0, 0.0, 38.0),
    ];
    let f = if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    } * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let t = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

/// Compact number for labels.
fn num(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Human period such as `7d`, `1d`, `12h`, `90m`.
pub(super) fn human_period(p: i64) -> String {
    if p > 0 && p % DAY == 0 {
        format!("{}d", p / DAY)
    } else if p > 0 && p % 3600 == 0 {
        format!("{}h", p / 3600)
    } else if p > 0 && p % 60 == 0 {
        format!("{}m", p / 60)
    } else {
        format!("{p}s")
    }
}

/// The heat map as a standalone SVG document.
pub fn heatmap_svg(profile: &SeasonProfile, series: &[Sample]) -> String {
    let grid = week_grid(series);
    let values: Vec<f64> = grid.iter().flatten().flatten().copied().collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let range = if hi > lo && (hi - lo).is_finite() {
        hi - lo
    } else {
        1.0
    };
    let width = LEFT + 24.0 * CELL_W + 24.0;
    let height = TOP + 7.0 * CELL_H + 78.0;
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let periods: Vec<String> = profile.periods().iter().map(|p| human_period(*p)).collect();
    let title = if periods.is_empty() {
        "Mean load by weekday and hour (UTC) — no significant period".to_string()
    } else {
        format!(
            "Mean load by weekday and hour (UTC) — periods: {}",
            periods.join(", ")
        )
    };
    let _ = write!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="13" font-weight="bold">{}</text>"#,
        escape_markup(&title)
    );
    for h in (0..24).step_by(3) {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{h:02}h</text>"#,
            LEFT + h as f64 * CELL_W,
            TOP - 6.0
        );
    }
    for (d, row) in grid.iter().enumerate() {
        let y = TOP + d as f64 * CELL_H;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + CELL_H * 0.65,
            DAYS[d]
        );
        for (h, cell) in row.iter().enumerate() {
            let x = LEFT + h as f64 * CELL_W;
            let (fill, tip) = match cell {
                Some(v) => (
                    colour((v - lo) / range),
                    format!("{} {h:02}:00 mean {}", DAYS[d], num(*v)),
                ),
                None => (
                    "#e8e8e8".to_string(),
                    format!("{} {h:02}:00 no data", DAYS[d]),
                ),
            };
            let _ = write!(
                s,
                r#"<rect x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" fill="{fill}" stroke="white" stroke-width="0.5"><title>{}</title></rect>"#,
                escape_markup(&tip)
            );
        }
    }
    outline_peaks(&mut s, profile);
    // Legend.
    let ly = TOP + 7.0 * CELL_H + 22.0;
    for k in 0..40 {
        let _ = write!(
            s,
            r#"<rect x="{}" y="{ly}" width="5" height="10" fill="{}"/>"#,
            LEFT + k as f64 * 5.0,
            colour(k as f64 / 39.0)
        );
    }
    let (lo_l, hi_l) = if values.is_empty() {
        ("-".to_string(), "-".to_string())
    } else {
        (num(lo), num(hi))
    };
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"#,
        ly + 24.0,
        escape_markup(&lo_l),
        LEFT + 200.0,
        ly + 24.0,
        escape_markup(&hi_l)
    );
    let _ = write!(
        s,
        r##"<rect x="{}" y="{ly}" width="14" height="10" fill="none" stroke="#1f4fd8" stroke-width="2"/><text x="{}" y="{}">peak window (lead time not shown)</text>"##,
        LEFT + 230.0,
        LEFT + 250.0,
        ly + 9.0
    );
    s.push_str("</svg>\n");
    s
}

/// Outlines every peak window, tiled over the week when its cycle divides a week.
fn outline_peaks(s: &mut String, profile: &SeasonProfile) {
    let cycle = profile.cycle();
    if cycle <= 0 || profile.peak_windows().is_empty() {
        return;
    }
    if WEEK % cycle != 0 {
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="{}">peak windows repeat every {} (not a divisor of a week): not drawn</text>"#,
            TOP + 7.0 * CELL_H + 14.0,
            human_period(cycle)
        );
        return;
    }
    for k in 0..WEEK / cycle {
        for w in profile.peak_windows() {
            let (start, end) = (
                (k * cycle).saturating_add(w.start),
                (k * cycle).saturating_add(w.end),
            );
            for d in 0..7_i64 {
                let (ds, de) = (d * DAY, (d + 1) * DAY);
                let (a, b) = (start.max(ds), end.min(de));
                if a >= b {
                    continue;
                }
                let x = LEFT + (a - ds) as f64 / 3600.0 * CELL_W;
                let wdt = (b - a) as f64 / 3600.0 * CELL_W;
                let y = TOP + d as f64 * CELL_H;
                let _ = write!(
                    s,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{wdt:.1}" height="{:.1}" fill="none" stroke="#1f4fd8" stroke-width="2"/>"##,
                    y + 1.5,
                    CELL_H - 3.0
                );
            }
        }
    }
}

/// A self-contained HTML page: the heat map SVG inline, the periods and the
/// peak windows as text. No scripts, stylesheets or fonts are fetched.
pub fn heatmap_html(profile: &SeasonProfile, series: &[Sample]) -> String {
    let mut s = String::with_capacity(40 * 1024);
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>nemutator season</title>");
    s.push_str("<style>body{font-family:sans-serif;margin:2em;color:#222}code{background:#f4f4f4;padding:0 .2em}</style></head><body>\n");
    s.push_str("<h1>nemutator season</h1>\n");
    let periods: Vec<String> = profile
        .periods()
        .iter()
        .map(|p| format!("<code>{}</code>", human_period(*p)))
        .collect();
    if periods.is_empty() {
        s.push_str("<p>No significant period: one season (off-peak) all the time.</p>\n");
    } else {
        let _ = writeln!(
            s,
            "<p>Periods: {}. Lead time: {} s.</p>",
            periods.join(", "),
            profile.lead()
        );
    }
    s.push_str(&heatmap_svg(profile, series));
    let windows = profile.peak_windows();
    if !windows.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Peak windows (every {}, UTC)</h2><ul>",
            human_period(profile.cycle())
        );
        for w in windows {
            let _ = writeln!(s, "<li>{}</li>", escape_markup(&w.label()));
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</body></html>\n");
    s
}
