//! Evaluation of the season model for issue 3 (see docs/SEASONS.md).
//!
//! `cargo run --release -p nemutator-core --example evaluate` reads `examples/data/taylor.csv` (run from the repository root), prints
//! the figures as Markdown and writes the charts to `docs/img/`.

use std::error::Error;
use std::fmt::Write as _;

use nemutator_core::season::{
    heatmap_svg, parse_series_csv, DefaultSeasonModel, SeasonModel, SeasonProfile,
};

/// Slots per week of the half-hourly data.
const M: usize = 336;
/// Slots per day.
const DAY_SLOTS: usize = 48;

/// Small xorshift64* generator with Gaussian draws (Box–Muller).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

fn smape(f: &[f64], a: &[f64]) -> f64 {
    let s: f64 = f
        .iter()
        .zip(a)
        .map(|(f, a)| 2.0 * (f - a).abs() / (f.abs() + a.abs()).max(1e-12))
        .sum();
    100.0 * s / a.len() as f64
}

fn mae(f: &[f64], a: &[f64]) -> f64 {
    f.iter().zip(a).map(|(f, a)| (f - a).abs()).sum::<f64>() / a.len() as f64
}

/// Additive Holt–Winters with period `m`; returns the one-step SSE on the
/// training data and the final state (level, trend, seasonals).
fn holt_winters(y: &[f64], m: usize, a: f64, b: f64, g: f64) -> (f64, f64, f64, Vec<f64>) {
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let mut level = mean(&y[..m]);
    let mut trend = (mean(&y[m..2 * m]) - level) / m as f64;
    let mut season: Vec<f64> = y[..m].iter().map(|v| v - level).collect();
    let mut sse = 0.0;
    for (t, &v) in y.iter().enumerate().skip(m) {
        let s = season[t % m];
        let f = level + trend + s;
        if t >= 2 * m {
            sse += (v - f) * (v - f);
        }
        let new_level = a * (v - s) + (1.0 - a) * (level + trend);
        trend = b * (new_level - level) + (1.0 - b) * trend;
        level = new_level;
        season[t % m] = g * (v - level) + (1.0 - g) * s;
    }
    (sse, level, trend, season)
}

/// Grid-searched Holt–Winters forecast of `h` steps after `y`.
fn holt_winters_forecast(y: &[f64], m: usize, h: usize) -> (Vec<f64>, (f64, f64, f64)) {
    let alphas = [
        0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99,
    ];
    let betas = [0.0, 0.001, 0.005, 0.01, 0.05, 0.1];
    let gammas = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9];
    let mut best = (f64::INFINITY, (0.0, 0.0, 0.0));
    for &a in &alphas {
        for &b in &betas {
            for &g in &gammas {
                let (sse, ..) = holt_winters(y, m, a, b, g);
                if sse < best.0 {
                    best = (sse, (a, b, g));
                }
            }
        }
    }
    let (a, b, g) = best.1;
    let (_, level, trend, season) = holt_winters(y, m, a, b, g);
    let n = y.len();
    let f = (1..=h)
        .map(|k| level + k as f64 * trend + season[(n + k - 1) % m])
        .collect();
    (f, best.1)
}

/// Per held-out day, the top 30 % of slots (rank-based: 14 of 48) of `v`.
fn top_share_per_day(v: &[f64]) -> Vec<bool> {
    let k = (0.3 * DAY_SLOTS as f64).round() as usize;
    let mut out = vec![false; v.len()];
    for (d, day) in v.chunks(DAY_SLOTS).enumerate() {
        let mut idx: Vec<usize> = (0..day.len()).collect();
        idx.sort_by(|a, b| day[*b].total_cmp(&day[*a]));
        for i in idx.into_iter().take(k) {
            out[d * DAY_SLOTS + i] = true;
        }
    }
    out
}

fn f1(pred: &[bool], truth: &[bool]) -> (f64, f64, f64) {
    let tp = pred.iter().zip(truth).filter(|(p, t)| **p && **t).count() as f64;
    let fp = pred.iter().zip(truth).filter(|(p, t)| **p && !**t).count() as f64;
    let fn_ = pred.iter().zip(truth).filter(|(p, t)| !**p && **t).count() as f64;
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ > 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    (f, precision, recall)
}

fn human(periods: &[i64]) -> String {
    if periods.is_empty() {
        return "none".into();
    }
    periods
        .iter()
        .map(|p| match p {
            p if p % 86_400 == 0 => format!("{}d", p / 86_400),
            p if p % 3600 == 0 => format!("{}h", p / 3600),
            p => format!("{}m", p / 60),
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Forecast-vs-actual chart of the held-out weeks.
fn forecast_chart(
    ts: &[i64],
    lines: &[(&str, &str, &str, &[f64])],
    profile: &SeasonProfile,
) -> String {
    let (w, h, l, r, t, b) = (1100.0, 420.0, 60.0, 20.0, 40.0, 60.0);
    let all: Vec<f64> = lines.iter().flat_map(|x| x.3.iter().copied()).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min) * 0.95;
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max) * 1.02;
    let n = ts.len();
    let x = |i: usize| l + (w - l - r) * i as f64 / (n - 1) as f64;
    let y = |v: f64| t + (h - t - b) * (1.0 - (v - lo) / (hi - lo));
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        s,
        r#"<text x="{l}" y="20" font-size="13" font-weight="bold">Taylor demand, held-out weeks 11–12 (MW): forecasts from the first 10 weeks</text>"#
    );
    // Peak windows (no lead) as shaded bands.
    let mut i = 0;
    while i < n {
        if profile.is_peak(ts[i]) {
            let j = (i..n).find(|j| !profile.is_peak(ts[*j])).unwrap_or(n);
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{t}" width="{:.1}" height="{}" fill="#dbe6ff"/>"##,
                x(i),
                x(j - 1) - x(i) + (w - l - r) / n as f64,
                h - t - b
            );
            i = j;
        } else {
            i += 1;
        }
    }
    for k in 0..=5 {
        let v = lo + (hi - lo) * k as f64 / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"##,
            w - r,
            y(v),
            y(v),
            l - 4.0,
            y(v) + 4.0,
            v
        );
    }
    for d in 0..=n / DAY_SLOTS {
        let i = (d * DAY_SLOTS).min(n - 1);
        let day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d % 7];
        let _ = write!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{t}" y2="{}" stroke="#eee"/>"##,
            x(i),
            x(i),
            h - b
        );
        if d < n / DAY_SLOTS {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{day}</text>"#,
                x(i) + (w - l - r) / 28.0,
                h - b + 14.0
            );
        }
    }
    for (k, (name, colour, dash, v)) in lines.iter().enumerate() {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.3" stroke-dasharray="{dash}" points="{}"/>"#,
            pts.join(" ")
        );
        let lx = l + 170.0 * k as f64;
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            h - 18.0,
            h - 18.0,
            lx + 28.0,
            h - 14.0
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{}" y="{}" width="20" height="10" fill="#dbe6ff"/><text x="{}" y="{}">peak window</text>"##,
        l + 680.0,
        h - 23.0,
        l + 704.0,
        h - 14.0
    );
    s.push_str("</svg>\n");
    s
}

/// Synthetic series: `weeks` of `step`-second samples from `f(t)` plus noise.
fn synth(weeks: i64, step: i64, noise: f64, seed: u64, f: &dyn Fn(i64) -> f64) -> Vec<(i64, f64)> {
    let mut rng = Rng::new(seed);
    let t0 = 1_699_833_600; // Monday 2023-11-13 00:00 UTC
    (0..weeks * 604_800 / step)
        .map(|i| t0 + i * step)
        .map(|t| (t, f(t) + noise * rng.normal()))
        .collect()
}

fn hour(t: i64) -> f64 {
    t.rem_euclid(86_400) as f64 / 3600.0
}

fn weekday(t: i64) -> i64 {
    (t - 345_600).div_euclid(86_400).rem_euclid(7)
}

fn business(t: i64) -> f64 {
    let h = hour(t);
    if (7.0..19.0).contains(&h) {
        (std::f64::consts::PI * (h - 7.0) / 12.0).sin()
    } else {
        0.0
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let text = std::fs::read_to_string("examples/data/taylor.csv")?;
    let series = parse_series_csv(&text)?;
    let ts: Vec<i64> = series.iter().map(|s| s.0).collect();
    let ys: Vec<f64> = series.iter().map(|s| s.1).collect();
    let split = 10 * M;
    let (train, test) = (&series[..split], &ys[split..]);
    let model = DefaultSeasonModel::default();
    let profile = model.fit(train)?;
    let ours: Vec<f64> = ts[split..].iter().map(|t| profile.forecast(*t)).collect();
    let naive: Vec<f64> = (0..test.len()).map(|i| ys[split - M + i % M]).collect();
    let (hw, hw_params) = holt_winters_forecast(&ys[..split], M, test.len());

    println!("## Taylor: fit on weeks 1–10, forecast weeks 11–12 (672 half-hours)\n");
    println!(
        "periods found: {:?} ({}), level {:.0} MW, {} peak windows per week",
        profile.periods(),
        human(profile.periods()),
        profile.level(),
        profile.peak_windows().len()
    );
    let (hl, lw) = profile.weighting();
    println!(
        "back-tested weighting: half-life {hl} cycles, level window {} h\n",
        lw / 3600
    );
    println!("| method | sMAPE % | MAE (MW) | peak-slot F1 (top 30% of the forecast per day) |");
    println!("| --- | ---: | ---: | ---: |");
    let truth = top_share_per_day(test);
    for (name, f) in [
        ("nemutator season model", &ours),
        ("seasonal naive (last training week repeated)", &naive),
        ("Holt–Winters additive, m = 336", &hw),
    ] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.3} |",
            smape(f, test),
            mae(f, test),
            f1(&top_share_per_day(f), &truth).0
        );
    }
    println!("\nHolt–Winters grid-searched (alpha, beta, gamma) = {hw_params:?}");
    let gain = 100.0 * (1.0 - smape(&ours, test) / smape(&naive, test));
    println!("sMAPE reduction vs seasonal naive: {gain:.1} % (goal >= 15 %)\n");

    let windows: Vec<bool> = ts[split..].iter().map(|t| profile.is_peak(*t)).collect();
    let with_lead: Vec<bool> = ts[split..]
        .iter()
        .map(|t| profile.season_at(*t) == nemutator_core::season::Season::Peak)
        .collect();
    let (f, p, r) = f1(&windows, &truth);
    println!("Peak windows vs actual top 30 % of each held-out day: F1 {f:.3} (precision {p:.3}, recall {r:.3}) (goal >= 0.9)");
    let (f, p, r) = f1(&with_lead, &truth);
    println!("Same with the 1 h lead time applied (season_at): F1 {f:.3} (precision {p:.3}, recall {r:.3})");
    let longest = DefaultSeasonModel::new(nemutator_core::season::SeasonConfig {
        peak_scope: nemutator_core::season::PeakScope::LongestPeriod,
        ..Default::default()
    })
    .fit(train)?;
    let lw: Vec<bool> = ts[split..].iter().map(|t| longest.is_peak(*t)).collect();
    let (f, p, r) = f1(&lw, &truth);
    println!("With peak_scope = longest-period (top 30 % of the week): F1 {f:.3} (precision {p:.3}, recall {r:.3})\n");
    // The same peak-window F1 from other origins (fit on the first k weeks,
    // score the next two): how much the figure above depends on the split.
    let mut by_origin = Vec::new();
    for k in 6..=10 {
        let origin = k * M;
        let p = model.fit(&series[..origin])?;
        let end = origin + 2 * M;
        let pred: Vec<bool> = ts[origin..end].iter().map(|t| p.is_peak(*t)).collect();
        by_origin.push(format!(
            "{k} w: {:.3}",
            f1(&pred, &top_share_per_day(&ys[origin..end])).0
        ));
    }
    println!(
        "Peak-window F1 by origin (fit on k weeks, score the next 2): {}\n",
        by_origin.join(", ")
    );
    println!("Peak windows (UTC, start timestamp taken as Monday 2000-06-05 00:00):");
    for w in profile.peak_windows() {
        println!("- {}", w.label());
    }

    // Rolling origin, one week ahead: fit on 10 weeks -> week 11, on 11 weeks -> week 12.
    println!("\n## Rolling origin, one week ahead (origins after weeks 10 and 11)\n");
    println!("| method | sMAPE % | MAE (MW) |");
    println!("| --- | ---: | ---: |");
    let mut agg = [(0.0, 0.0); 3];
    for origin in [10 * M, 11 * M] {
        let p = model.fit(&series[..origin])?;
        let actual = &ys[origin..origin + M];
        let o: Vec<f64> = ts[origin..origin + M]
            .iter()
            .map(|t| p.forecast(*t))
            .collect();
        let nv: Vec<f64> = ys[origin - M..origin].to_vec();
        let (h, _) = holt_winters_forecast(&ys[..origin], M, M);
        for (k, f) in [o, nv, h].iter().enumerate() {
            agg[k].0 += smape(f, actual) / 2.0;
            agg[k].1 += mae(f, actual) / 2.0;
        }
    }
    for (k, name) in [
        "nemutator season model",
        "seasonal naive (same slot last week)",
        "Holt–Winters additive, m = 336",
    ]
    .iter()
    .enumerate()
    {
        println!("| {name} | {:.2} | {:.0} |", agg[k].0, agg[k].1);
    }

    // False periods on 20 series without rhythm.
    println!("\n## Series without rhythm (4,032 half-hours each)\n");
    let mut false_periods = 0;
    let mut rows = Vec::new();
    for seed in 1..=10u64 {
        let mut rng = Rng::new(seed);
        let mut v = ys.clone();
        for i in (1..v.len()).rev() {
            v.swap(i, rng.below(i + 1));
        }
        let s: Vec<(i64, f64)> = ts.iter().copied().zip(v).collect();
        let p = model.fit(&s)?;
        false_periods += usize::from(!p.periods().is_empty());
        rows.push(format!("shuffled taylor #{seed}: {}", human(p.periods())));
    }
    for seed in 1..=10u64 {
        let mut rng = Rng::new(1000 + seed);
        let mut x = 30_000.0;
        let s: Vec<(i64, f64)> = ts
            .iter()
            .map(|t| {
                x += 300.0 * rng.normal();
                (*t, x)
            })
            .collect();
        let p = model.fit(&s)?;
        false_periods += usize::from(!p.periods().is_empty());
        rows.push(format!("random walk #{seed}: {}", human(p.periods())));
    }
    println!("false-period rate: {false_periods} of 20 (goal 0 of 20)\n");
    for r in rows {
        println!("- {r}");
    }

    // Synthetic suite.
    println!("\n## Synthetic suite (8 weeks of 5-minute samples unless noted; 3 seeds each)\n");
    println!("| scenario | expected | found (seed 1, 2, 3) | ok |");
    println!("| --- | --- | --- | --- |");
    let daily = |t: i64| 10.0 + 4.0 * business(t);
    let weekly = |t: i64| 10.0 + if weekday(t) < 5 { 3.0 } else { 0.0 };
    let dw = |t: i64| 10.0 + 4.0 * business(t) * if weekday(t) < 5 { 1.0 } else { 0.3 };
    let twelve = |t: i64| 10.0 + 2.0 * (2.0 * std::f64::consts::PI * hour(t) / 12.0).sin();
    let five = |t: i64| 10.0 + 2.0 * (2.0 * std::f64::consts::PI * t as f64 / 18_000.0).sin();
    type Gen<'a> = (
        &'a str,
        &'a str,
        Vec<i64>,
        Box<dyn Fn(u64) -> Vec<(i64, f64)> + 'a>,
    );
    let scenarios: Vec<Gen> = vec![
        (
            "daily, noise sd 0.5",
            "1d",
            vec![86_400],
            Box::new(move |s| synth(8, 300, 0.5, s, &daily)),
        ),
        (
            "daily, noise sd 2 (SNR 0.5)",
            "1d",
            vec![86_400],
            Box::new(move |s| synth(8, 300, 2.0, s, &daily)),
        ),
        (
            "weekly (weekday vs weekend)",
            "7d",
            vec![604_800],
            Box::new(move |s| synth(8, 300, 0.5, s, &weekly)),
        ),
        (
            "daily + weekly",
            "1d+7d",
            vec![86_400, 604_800],
            Box::new(move |s| synth(8, 300, 0.5, s, &dw)),
        ),
        (
            "12 h",
            "12h",
            vec![43_200],
            Box::new(move |s| synth(8, 300, 0.5, s, &twelve)),
        ),
        (
            "5 h (not a candidate)",
            "5h",
            vec![18_000],
            Box::new(move |s| synth(8, 300, 0.5, s, &five)),
        ),
        (
            "daily + weekly, 40 % of samples missing",
            "1d+7d",
            vec![86_400, 604_800],
            Box::new(move |s| {
                let mut rng = Rng::new(s + 99);
                synth(8, 300, 0.5, s, &dw)
                    .into_iter()
                    .filter(|_| rng.uniform() > 0.4)
                    .collect()
            }),
        ),
        (
            "daily + weekly, 3-day hole",
            "1d+7d",
            vec![86_400, 604_800],
            Box::new(move |s| {
                synth(8, 300, 0.5, s, &dw)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !(5000..5000 + 864).contains(i))
                    .map(|x| x.1)
                    .collect()
            }),
        ),
        (
            "daily, 1 % outliers x20",
            "1d",
            vec![86_400],
            Box::new(move |s| {
                let mut rng = Rng::new(s + 7);
                synth(8, 300, 0.5, s, &daily)
                    .into_iter()
                    .map(|(t, v)| (t, if rng.uniform() < 0.01 { v * 20.0 } else { v }))
                    .collect()
            }),
        ),
        (
            "daily, level shift +20 at week 4",
            "1d",
            vec![86_400],
            Box::new(move |s| {
                synth(8, 300, 0.5, s, &daily)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, v))| (t, if i > 8064 { v + 20.0 } else { v }))
                    .collect()
            }),
        ),
        (
            "daily, linear trend x3 over 8 weeks",
            "1d",
            vec![86_400],
            Box::new(move |s| {
                synth(8, 300, 0.5, s, &daily)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (t, v))| (t, v + 20.0 * i as f64 / 16_128.0))
                    .collect()
            }),
        ),
        (
            "white noise",
            "none",
            vec![],
            Box::new(move |s| synth(8, 300, 1.0, s, &|_| 10.0)),
        ),
        (
            "random walk",
            "none",
            vec![],
            Box::new(move |s| {
                let mut x = 0.0;
                synth(8, 300, 1.0, s, &|_| 0.0)
                    .into_iter()
                    .map(|(t, v)| {
                        x += v;
                        (t, x)
                    })
                    .collect()
            }),
        ),
    ];
    let mut ok_count = 0;
    let total = scenarios.len();
    for (name, expected, want, gen) in &scenarios {
        let found: Vec<Vec<i64>> = (1..=3)
            .map(|s| {
                model
                    .fit(&gen(s))
                    .map(|p| p.periods().to_vec())
                    .unwrap_or_default()
            })
            .collect();
        let ok = found.iter().all(|f| f == want);
        ok_count += usize::from(ok);
        let shown: Vec<String> = found.iter().map(|f| human(f)).collect();
        println!(
            "| {name} | {expected} | {} | {} |",
            shown.join(", "),
            if ok { "yes" } else { "**no**" }
        );
    }
    println!("\n{ok_count} of {total} scenarios found exactly the expected periods on all seeds.");

    std::fs::create_dir_all("docs/img")?;
    let chart = forecast_chart(
        &ts[split..],
        &[
            ("actual", "#000000", "none", test),
            ("season model", "#1f4fd8", "none", &ours),
            ("seasonal naive", "#888888", "4 3", &naive),
            ("Holt–Winters", "#e07000", "2 2", &hw),
        ],
        &profile,
    );
    std::fs::write("docs/img/taylor-forecast.svg", chart)?;
    std::fs::write("docs/img/taylor-heatmap.svg", heatmap_svg(&profile, train))?;
    println!("\nwrote docs/img/taylor-forecast.svg and docs/img/taylor-heatmap.svg");
    Ok(())
}
