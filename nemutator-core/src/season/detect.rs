//! Fitting: candidate periods, the rotation-permutation significance test,
//! harmonic folding and the final backfitted profile.

use super::backfit::{choose_weighting, component_bins, estimate, refit, slots};
use super::config::SeasonConfig;
use super::dsp::{self, XorShift};
use super::peaks;
use super::prep::{self, cycle_index, phase_bin, Grid};
use super::profile::{Component, PeriodTest, SeasonProfile, TestOutcome, PROFILE_VERSION};
use super::{Sample, SeasonError};

/// Most phase bins the significance test folds a period into.
const MAX_TEST_BINS: i64 = 96;
/// Hampel filter: neighbours on each side, and threshold in robust standard deviations.
const HAMPEL: (usize, f64) = (3, 5.0);
/// Least cycles a discovered period must span in the held-out half.
const DISCOVERED_MIN_CYCLES: f64 = 4.0;

/// Fits the default model (see the module docs for the method).
pub(super) fn fit(config: &SeasonConfig, series: &[Sample]) -> Result<SeasonProfile, SeasonError> {
    config.validate()?;
    let clean = prep::clean(series);
    let (Some(first), Some(last)) = (clean.first(), clean.last()) else {
        return Err(SeasonError::EmptySeries);
    };
    let (from, to) = (first.0, last.0);
    let Some(mut grid) = prep::to_grid(&clean, config.max_grid_points) else {
        let mut level = 0.0;
        for (k, s) in clean.iter().enumerate() {
            level += (s.1 - level) / (k + 1) as f64;
        }
        let mut p = SeasonProfile::flat(level, config.lead);
        (p.fitted_from, p.fitted_to) = (from, to);
        return Ok(p);
    };
    prep::hampel(&mut grid.values, &grid.observed, HAMPEL.0, HAMPEL.1);

    let candidates = candidates(config, &grid);
    let budget = (config.candidate_periods.len() + config.discover).max(1);
    let z_crit = dsp::upper_normal_quantile(config.significance / budget as f64);
    let mut rng = XorShift::new(config.seed);
    let mut residual = grid.values.clone();
    let mut accepted: Vec<Component> = Vec::new();
    let mut tests: Vec<PeriodTest> = Vec::new();
    for (period, discovered) in candidates {
        let mut rec = PeriodTest {
            period,
            discovered,
            statistic: 0.0,
            null_mean: 0.0,
            z: 0.0,
            autocorrelation: 0.0,
            outcome: TestOutcome::Untestable,
        };
        if !testable(config, &grid, period, discovered) {
            tests.push(rec);
            continue;
        }
        let lag = slots(period, grid.step);
        let ma = prep::moving_average(&residual, lag);
        let detrended: Vec<f64> = residual.iter().zip(&ma).map(|(r, m)| r - m).collect();
        // A discovered period is tested on the half of the data it was not
        // discovered in, so that picking the periodogram's highest peak
        // does not bias its test.
        let test_from = if discovered { grid.values.len() / 2 } else { 0 };
        let fold = fold_test(&detrended, &grid, test_from, period, config, &mut rng);
        let (acf, acf_peak) = autocorrelation_peak(&detrended, &grid.observed, lag);
        rec.statistic = fold.statistic;
        rec.null_mean = fold.null_mean;
        rec.z = fold.z;
        rec.autocorrelation = acf;
        rec.outcome = if !fold.beats_shuffles || fold.z < z_crit {
            TestOutcome::NotSignificant
        } else if fold.statistic - fold.null_mean < config.min_strength {
            TestOutcome::Weak
        } else if !(acf > 0.0 && acf_peak) {
            TestOutcome::NoAutocorrelationPeak
        } else {
            TestOutcome::Accepted
        };
        tests.push(rec);
        if tests.last().map(|t| t.outcome) == Some(TestOutcome::Accepted) {
            let bins = component_bins(period, grid.step);
            let bin_of = grid.phase_bins(period, bins);
            let comp = estimate(&detrended, &grid.observed, &bin_of, period, bins, None);
            for (r, b) in residual.iter_mut().zip(&bin_of) {
                *r -= comp.values.get(*b).copied().unwrap_or(0.0);
            }
            accepted.push(comp);
            fold_harmonics(&mut accepted, &mut tests, config.harmonic_share);
        }
    }

    let mut periods: Vec<i64> = accepted.iter().map(|c| c.period).collect();
    periods.sort_unstable();
    let idx: Vec<Vec<usize>> = periods
        .iter()
        .map(|p| grid.phase_bins(*p, component_bins(*p, grid.step)))
        .collect();
    let idx: Vec<&[usize]> = idx.iter().map(Vec::as_slice).collect();
    let backtest = choose_weighting(&grid, &periods, &idx, config);
    let choice = backtest.weighting;
    let (mut components, level) = refit(&grid, &periods, &idx, choice);
    for c in &mut components {
        c.values.iter_mut().for_each(|v| *v *= grid.scale);
    }
    let holdout = backtest
        .held_out
        .as_ref()
        .map(|(comps, from)| peaks::Holdout {
            components: comps,
            grid: &grid,
            from: *from,
        });
    let (cycle, peak_windows) = peaks::peak_windows(&components, grid.step, config, holdout);
    Ok(SeasonProfile {
        version: PROFILE_VERSION,
        periods,
        components,
        level: level * grid.scale,
        cycle,
        peak_windows,
        lead: config.lead,
        step: grid.step,
        fitted_from: from,
        fitted_to: to,
        half_life_cycles: choice.half_life_cycles,
        level_window: choice.level_window,
        tests,
    })
}

/// Whether the data spans enough cycles of `period` (for a discovered
/// period: the held-out half spans four), and the period enough slots.
fn testable(config: &SeasonConfig, grid: &Grid, period: i64, discovered: bool) -> bool {
    let (span, cycles) = if discovered {
        (
            grid.span() / 2,
            config.min_cycles.max(DISCOVERED_MIN_CYCLES),
        )
    } else {
        (grid.span(), config.min_cycles)
    };
    period as i128 >= 3 * grid.step as i128 && span as f64 >= cycles * period as f64
}

/// Configured periods plus periodogram discoveries, ascending: `(period, discovered)`.
fn candidates(config: &SeasonConfig, grid: &Grid) -> Vec<(i64, bool)> {
    let mut out: Vec<(i64, bool)> = config
        .candidate_periods
        .iter()
        .map(|p| (*p, false))
        .collect();
    if config.discover > 0 {
        let longest = config
            .candidate_periods
            .iter()
            .copied()
            .filter(|p| testable(config, grid, *p, false))
            .max()
            .unwrap_or(grid.span() / 4);
        // Discovery looks at the first half only; the test uses the second.
        let half = &grid.values[..grid.values.len() / 2];
        let ma = prep::moving_average(half, slots(longest, grid.step));
        let resid: Vec<f64> = half.iter().zip(&ma).map(|(v, m)| v - m).collect();
        let max_period =
            (grid.span() as f64 / 2.0 / config.min_cycles.max(DISCOVERED_MIN_CYCLES)) as i64;
        let range = (grid.step.saturating_mul(3), max_period);
        for p in dsp::discover_periods(
            &resid,
            grid.step,
            range,
            config.significance,
            config.discover,
        ) {
            if !out
                .iter()
                .any(|(q, _)| (*q as i128 - p as i128).abs() * 33 < *q as i128)
            {
                out.push((p, true));
            }
        }
    }
    // Configured periods first, shortest first; then the discovered ones,
    // which are thus tested on what the configured periods leave.
    out.sort_unstable_by_key(|c| (c.1, c.0));
    out.dedup_by_key(|c| c.0);
    out
}

/// Result of the rotation-permutation test.
struct Fold {
    statistic: f64,
    null_mean: f64,
    z: f64,
    beats_shuffles: bool,
}

/// Share of variance explained by the mean profile folded at `period`,
/// against shuffles that rotate each cycle by its own random phase.
/// Slots before `from` are left out.
fn fold_test(
    d: &[f64],
    grid: &Grid,
    from: usize,
    period: i64,
    config: &SeasonConfig,
    rng: &mut XorShift,
) -> Fold {
    let none = Fold {
        statistic: 0.0,
        null_mean: 0.0,
        z: 0.0,
        beats_shuffles: false,
    };
    let n = d.len();
    if n == 0 {
        return none;
    }
    let bins = (period / grid.step.max(1)).clamp(2, MAX_TEST_BINS) as usize;
    let c0 = cycle_index(grid.time(0), period);
    let cycles = (cycle_index(grid.time(n - 1), period) - c0 + 1) as usize;
    let mut sums = vec![0.0; cycles * bins];
    let mut counts = vec![0.0; cycles * bins];
    let (mut total, mut count) = (0.0, 0.0);
    for (i, v) in d.iter().enumerate() {
        if !grid.observed[i] || i < from {
            continue;
        }
        let t = grid.time(i);
        let c = (cycle_index(t, period) - c0) as usize;
        let cell = c * bins + phase_bin(t, period, bins);
        if let (Some(s), Some(k)) = (sums.get_mut(cell), counts.get_mut(cell)) {
            *s += v;
            *k += 1.0;
        }
        total += v;
        count += 1.0;
    }
    if count < 2.0 * bins as f64 {
        return none;
    }
    let mean = total / count;
    let sst: f64 = d
        .iter()
        .zip(&grid.observed)
        .skip(from)
        .filter(|(_, o)| **o)
        .map(|(v, _)| (v - mean) * (v - mean))
        .sum();
    if sst.is_nan() || sst <= 1e-24 * count {
        return none;
    }
    let offset_total = total * total / count;
    let mut prof_sum = vec![0.0; bins];
    let mut prof_cnt = vec![0.0; bins];
    let mut explained = |offsets: &[usize]| -> f64 {
        prof_sum.iter_mut().for_each(|v| *v = 0.0);
        prof_cnt.iter_mut().for_each(|v| *v = 0.0);
        // Rotating cycle c by o moves bin b to (b + o) mod bins: two slice adds.
        for (c, &o) in offsets.iter().enumerate() {
            let (s_c, k_c) = (
                &sums[c * bins..(c + 1) * bins],
                &counts[c * bins..(c + 1) * bins],
            );
            let o = o % bins;
            for (dst, src) in prof_sum[o..].iter_mut().zip(&s_c[..bins - o]) {
                *dst += src;
            }
            for (dst, src) in prof_sum[..o].iter_mut().zip(&s_c[bins - o..]) {
                *dst += src;
            }
            for (dst, src) in prof_cnt[o..].iter_mut().zip(&k_c[..bins - o]) {
                *dst += src;
            }
            for (dst, src) in prof_cnt[..o].iter_mut().zip(&k_c[bins - o..]) {
                *dst += src;
            }
        }
        let between: f64 = prof_sum
            .iter()
            .zip(&prof_cnt)
            .filter(|(_, k)| **k > 0.0)
            .map(|(s, k)| s * s / k)
            .sum();
        ((between - offset_total) / sst).max(0.0)
    };
    let mut offsets = vec![0usize; cycles];
    let statistic = explained(&offsets);
    let allowed = (config.significance * (config.shuffles + 1) as f64).floor() as usize;
    let (mut s1, mut s2, mut done, mut ge) = (0.0, 0.0, 0.0, 0usize);
    for _ in 0..config.shuffles {
        offsets.iter_mut().for_each(|o| *o = rng.below(bins));
        let s = explained(&offsets);
        s1 += s;
        s2 += s * s;
        done += 1.0;
        if s >= statistic {
            ge += 1;
            if ge >= allowed {
                break;
            }
        }
    }
    let null_mean = s1 / done;
    let sd = (s2 / done - null_mean * null_mean).max(0.0).sqrt();
    let z = if sd > 0.0 {
        (statistic - null_mean) / sd
    } else if statistic > null_mean {
        f64::MAX
    } else {
        0.0
    };
    Fold {
        statistic,
        null_mean,
        z,
        beats_shuffles: ge < allowed,
    }
}

/// Autocorrelation at `lag`, and whether it is at least that of the lags a
/// tenth of a period either side.
fn autocorrelation_peak(d: &[f64], observed: &[bool], lag: usize) -> (f64, bool) {
    let Some(at) = dsp::autocorrelation(d, observed, lag) else {
        return (0.0, false);
    };
    let delta = (lag / 10).max(1);
    let below =
        dsp::autocorrelation(d, observed, lag.saturating_sub(delta)).unwrap_or(f64::NEG_INFINITY);
    let above = dsp::autocorrelation(d, observed, lag + delta).unwrap_or(f64::NEG_INFINITY);
    (at, at >= below && at >= above)
}

/// After accepting a component (the last of `accepted`), folds into it every
/// shorter accepted period that divides it and carries less than `share` of
/// its shape.
fn fold_harmonics(accepted: &mut Vec<Component>, tests: &mut [PeriodTest], share: f64) {
    let Some(mut long) = accepted.pop() else {
        return;
    };
    let bins = long.values.len();
    let q = long.period;
    let centres: Vec<i64> = (0..bins)
        .map(|b| {
            prep::EPOCH_MONDAY
                .saturating_add(((2 * b as i128 + 1) * q as i128 / (2 * bins as i128)) as i64)
        })
        .collect();
    let mut keep = Vec::with_capacity(accepted.len());
    for short in accepted.drain(..) {
        let ratio = q as f64 / short.period as f64;
        let divides = ratio >= 1.5 && (ratio - ratio.round()).abs() < 0.02 * ratio.round();
        if !divides {
            keep.push(short);
            continue;
        }
        let tiled: Vec<f64> = centres.iter().map(|t| short.value_at(*t)).collect();
        let combined: Vec<f64> = tiled.iter().zip(&long.values).map(|(a, b)| a + b).collect();
        let var_combined = prep::std_dev(&combined).powi(2);
        let carried = if var_combined > 0.0 {
            prep::std_dev(&tiled).powi(2) / var_combined
        } else {
            1.0
        };
        if carried < share {
            long.values = combined;
            if let Some(t) = tests.iter_mut().find(|t| t.period == short.period) {
                t.outcome = TestOutcome::Harmonic;
            }
        } else {
            keep.push(short);
        }
    }
    keep.push(long);
    *accepted = keep;
}
