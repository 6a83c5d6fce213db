//! Fitting the default season model to 8 weeks of 5-minute samples (16,128
//! points) with a daily and a weekly rhythm and noise.

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use nemutator_core::season::{DefaultSeasonModel, SeasonModel};

/// 8 weeks of 5-minute samples: business hours, quieter weekends, noise.
fn series() -> Vec<(i64, f64)> {
    let t0 = 1_699_833_600; // Monday 00:00 UTC
    let mut state = 0x1234_5678_9abc_def1_u64;
    (0..8 * 7 * 288)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let t = t0 + i * 300;
            let hour = (t % 86_400) as f64 / 3600.0;
            let weekday = ((t - 345_600) / 86_400) % 7;
            let bump = if (7.0..19.0).contains(&hour) {
                (std::f64::consts::PI * (hour - 7.0) / 12.0).sin()
            } else {
                0.0
            };
            let week = if weekday < 5 { 1.0 } else { 0.3 };
            (t, 100.0 + 60.0 * bump * week + 20.0 * noise)
        })
        .collect()
}

fn fit(c: &mut Criterion) {
    let s = series();
    let model = DefaultSeasonModel::default();
    c.bench_function("season_fit_8w_5min_16128", |b| {
        b.iter(|| model.fit(black_box(&s)))
    });
}

criterion_group!(benches, fit);
criterion_main!(benches);
