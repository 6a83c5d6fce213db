//! Tests of the season model, with shared fixture builders (`mk_*`).

mod detection;
mod io;
mod profile;

use super::dsp::XorShift;
use super::{DefaultSeasonModel, Sample, SeasonModel, SeasonProfile};

/// Monday 2023-11-13 00:00:00 UTC.
pub(super) const T0: i64 = 1_699_833_600;
pub(super) const HOUR: i64 = 3_600;
pub(super) const DAY: i64 = 86_400;
pub(super) const WEEK: i64 = 7 * DAY;

/// Gaussian noise from the module's own generator (Box–Muller).
pub(super) struct MkNoise(XorShift);

impl MkNoise {
    pub(super) fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(super) fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
}

pub(super) fn mk_noise(seed: u64) -> MkNoise {
    MkNoise(XorShift::new(seed))
}

/// Hours since midnight UTC.
pub(super) fn mk_hour(t: i64) -> f64 {
    t.rem_euclid(DAY) as f64 / 3600.0
}

/// 0 = Monday.
pub(super) fn mk_weekday(t: i64) -> i64 {
    (t - 4 * DAY).div_euclid(DAY).rem_euclid(7)
}

/// Business-hours bump: 0 at night, a half sine from 07:00 to 19:00 UTC.
pub(super) fn mk_business(t: i64) -> f64 {
    let h = mk_hour(t);
    if (7.0..19.0).contains(&h) {
        (std::f64::consts::PI * (h - 7.0) / 12.0).sin()
    } else {
        0.0
    }
}

/// `weeks` of samples every `step` seconds from `T0`: `f(t)` plus Gaussian noise.
pub(super) fn mk_series(
    weeks: i64,
    step: i64,
    noise: f64,
    seed: u64,
    f: impl Fn(i64) -> f64,
) -> Vec<Sample> {
    let mut rng = mk_noise(seed);
    (0..weeks * WEEK / step)
        .map(|i| T0 + i * step)
        .map(|t| (t, f(t) + noise * rng.normal()))
        .collect()
}

/// Daily business-hours rhythm: 10 at night, 14 at 13:00.
pub(super) fn mk_daily(weeks: i64, noise: f64, seed: u64) -> Vec<Sample> {
    mk_series(weeks, 15 * 60, noise, seed, |t| 10.0 + 4.0 * mk_business(t))
}

/// Weekday vs weekend, flat within each day.
pub(super) fn mk_weekly(weeks: i64, noise: f64, seed: u64) -> Vec<Sample> {
    mk_series(weeks, 30 * 60, noise, seed, |t| {
        if mk_weekday(t) < 5 {
            13.0
        } else {
            10.0
        }
    })
}

/// Daily business hours, much weaker at weekends.
pub(super) fn mk_daily_weekly(weeks: i64, noise: f64, seed: u64) -> Vec<Sample> {
    mk_series(weeks, 15 * 60, noise, seed, |t| {
        10.0 + 4.0 * mk_business(t) * if mk_weekday(t) < 5 { 1.0 } else { 0.3 }
    })
}

/// A 12 h sine.
pub(super) fn mk_twelve_hours(weeks: i64, noise: f64, seed: u64) -> Vec<Sample> {
    mk_series(weeks, 15 * 60, noise, seed, |t| {
        10.0 + 2.0 * (2.0 * std::f64::consts::PI * mk_hour(t) / 12.0).sin()
    })
}

/// Gaussian white noise around 10.
pub(super) fn mk_white_noise(weeks: i64, seed: u64) -> Vec<Sample> {
    mk_series(weeks, 15 * 60, 1.0, seed, |_| 10.0)
}

/// A Gaussian random walk.
pub(super) fn mk_random_walk(weeks: i64, seed: u64) -> Vec<Sample> {
    let mut x = 100.0;
    mk_series(weeks, 15 * 60, 1.0, seed, |_| 0.0)
        .into_iter()
        .map(|(t, e)| {
            x += e;
            (t, x)
        })
        .collect()
}

/// The same values at the same timestamps, in shuffled order of values.
pub(super) fn mk_shuffled(series: &[Sample], seed: u64) -> Vec<Sample> {
    let mut rng = mk_noise(seed);
    let mut values: Vec<f64> = series.iter().map(|s| s.1).collect();
    for i in (1..values.len()).rev() {
        values.swap(i, rng.below(i + 1));
    }
    series.iter().map(|s| s.0).zip(values).collect()
}

/// Drops a random `fraction` of the samples.
pub(super) fn mk_with_gaps(series: &[Sample], fraction: f64, seed: u64) -> Vec<Sample> {
    let mut rng = mk_noise(seed);
    series
        .iter()
        .copied()
        .filter(|_| rng.uniform() >= fraction)
        .collect()
}

/// Multiplies a random `fraction` of the samples by `factor`.
pub(super) fn mk_with_outliers(
    series: &[Sample],
    fraction: f64,
    factor: f64,
    seed: u64,
) -> Vec<Sample> {
    let mut rng = mk_noise(seed);
    series
        .iter()
        .map(|&(t, v)| {
            (
                t,
                if rng.uniform() < fraction {
                    v * factor
                } else {
                    v
                },
            )
        })
        .collect()
}

/// Adds `shift` to every sample from `at` on.
pub(super) fn mk_with_level_shift(series: &[Sample], at: i64, shift: f64) -> Vec<Sample> {
    series
        .iter()
        .map(|&(t, v)| (t, if t >= at { v + shift } else { v }))
        .collect()
}

/// Fits with the default model; panics (test only) on error.
pub(super) fn mk_fit(series: &[Sample]) -> SeasonProfile {
    match DefaultSeasonModel::default().fit(series) {
        Ok(p) => p,
        Err(e) => panic!("fit failed: {e}"),
    }
}
