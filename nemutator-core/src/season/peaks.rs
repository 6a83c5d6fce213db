//! Peak windows from the seasonal shape: quantile thresholds with
//! hysteresis, then gap filling and a minimum length so the season does not
//! flap.

use super::config::{PeakScope, SeasonConfig};
use super::prep::{quantile_sorted, EPOCH_MONDAY};
use super::profile::{Component, PeakWindow};

/// Most bins the shape of one cycle is evaluated on.
const MAX_SHAPE_BINS: i64 = 4032;

/// The cycle (longest period) and the peak windows within it. Components
/// whose period does not divide the cycle are left out of the shape.
pub(super) fn peak_windows(
    components: &[Component],
    step: i64,
    config: &SeasonConfig,
) -> (i64, Vec<PeakWindow>) {
    let Some(cycle) = components.iter().map(|c| c.period).filter(|p| *p > 0).max() else {
        return (0, Vec::new());
    };
    let parts: Vec<&Component> = components
        .iter()
        .filter(|c| c.period > 0 && cycle % c.period == 0)
        .collect();
    let bins = (cycle / step.max(1)).clamp(2, MAX_SHAPE_BINS) as usize;
    let centre = |b: usize| ((2 * b as i128 + 1) * cycle as i128 / (2 * bins as i128)) as i64;
    let raw: Vec<f64> = (0..bins)
        .map(|b| {
            let t = EPOCH_MONDAY.saturating_add(centre(b));
            parts.iter().map(|c| c.value_at(t)).sum()
        })
        .collect();
    // Smooth over `min_peak` so that estimation noise in the profile does
    // not cut windows into pieces.
    let width = ((config.min_peak as i128 * bins as i128 / cycle as i128) as usize).clamp(1, bins);
    let shape = circular_mean(&raw, width);
    let segment_len = match config.peak_scope {
        PeakScope::LongestPeriod => cycle,
        PeakScope::ShortestPeriod => parts.iter().map(|c| c.period).min().unwrap_or(cycle),
    };
    let segment_of = |b: usize| (centre(b) / segment_len.max(1)) as usize;
    let segments = segment_of(bins - 1) + 1;
    // Per-segment thresholds (double threshold, as in hysteresis edge
    // linking): a window is a stretch at or above the peak quantile that
    // somewhere reaches the quantile plus the hysteresis band. Bumps that
    // barely cross the quantile make no window, and a window has no lag
    // (it is symmetric around a symmetric bump). A slot at its segment's
    // minimum is never peak.
    let mut thresholds = vec![(0.0, 0.0, 0.0); segments];
    for (s, th) in thresholds.iter_mut().enumerate() {
        let mut vals: Vec<f64> = (0..bins)
            .filter(|b| segment_of(*b) == s)
            .map(|b| shape[b])
            .collect();
        vals.sort_by(f64::total_cmp);
        let min = vals.first().copied().unwrap_or(0.0);
        *th = (
            quantile_sorted(&vals, config.peak_quantile + config.hysteresis),
            quantile_sorted(&vals, config.peak_quantile),
            min,
        );
    }
    let range = shape.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v))
        - shape.iter().fold(f64::INFINITY, |m, v| m.min(*v));
    if !(range > 0.0 && range.is_finite()) {
        return (cycle, Vec::new());
    }
    let eps = 1e-9 * range;
    let above: Vec<bool> = (0..bins)
        .map(|b| {
            let (_, lo, min) = thresholds[segment_of(b)];
            shape[b] >= lo && shape[b] > min + eps
        })
        .collect();
    let mut peak = vec![false; bins];
    for (start, len, v) in runs(&above) {
        let reaches = (0..len)
            .map(|k| (start + k) % bins)
            .any(|b| shape[b] >= thresholds[segment_of(b)].0);
        if v && reaches {
            for k in 0..len {
                peak[(start + k) % bins] = true;
            }
        }
    }
    let min_bins =
        ((config.min_peak as i128 * bins as i128 + cycle as i128 - 1) / cycle as i128) as usize;
    let before_fill = peak.clone();
    set_short_runs(&mut peak, false, min_bins, true);
    if peak.iter().all(|p| *p) {
        peak = before_fill;
    }
    set_short_runs(&mut peak, true, min_bins, false);
    (cycle, to_windows(&peak, cycle))
}

/// Centred circular moving average over `width` bins.
fn circular_mean(v: &[f64], width: usize) -> Vec<f64> {
    let n = v.len();
    if width <= 1 || n == 0 {
        return v.to_vec();
    }
    let width = width.min(n);
    // Prefix sums over the series laid out twice.
    let mut prefix = Vec::with_capacity(2 * n + 1);
    prefix.push(0.0);
    let mut acc = 0.0;
    for k in 0..2 * n {
        acc += v[k % n];
        prefix.push(acc);
    }
    let half = width / 2;
    (0..n)
        .map(|i| {
            let start = i + n - half;
            let (a, b) = (start % n, start % n + width);
            (prefix[b] - prefix[a]) / width as f64
        })
        .collect()
}

/// Circular runs of equal values: `(start, len, value)`, starting at a boundary.
fn runs(states: &[bool]) -> Vec<(usize, usize, bool)> {
    let n = states.len();
    let Some(first_boundary) = (0..n).find(|i| states[*i] != states[(i + n - 1) % n]) else {
        return match states.first() {
            Some(v) => vec![(0, n, *v)],
            None => Vec::new(),
        };
    };
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    for k in 0..n {
        let i = (first_boundary + k) % n;
        match out.last_mut() {
            Some(run) if run.2 == states[i] => run.1 += 1,
            _ => out.push((i, 1, states[i])),
        }
    }
    out
}

/// Sets runs of `value` shorter than `min_len` to `to`.
fn set_short_runs(states: &mut [bool], value: bool, min_len: usize, to: bool) {
    let n = states.len();
    for (start, len, v) in runs(states) {
        if v == value && len < min_len && len < n {
            for k in 0..len {
                states[(start + k) % n] = to;
            }
        }
    }
}

/// Peak runs as windows in seconds, split at the cycle's end, sorted.
fn to_windows(peak: &[bool], cycle: i64) -> Vec<PeakWindow> {
    let bins = peak.len() as i128;
    if bins == 0 {
        return Vec::new();
    }
    let sec = |b: i128| (b * cycle as i128 / bins) as i64;
    let mut out = Vec::new();
    for (start, len, v) in runs(peak) {
        if !v {
            continue;
        }
        let (s, e) = (start as i128, start as i128 + len as i128);
        if e <= bins {
            out.push(PeakWindow {
                period: cycle,
                start: sec(s),
                end: sec(e),
            });
        } else {
            out.push(PeakWindow {
                period: cycle,
                start: sec(s),
                end: cycle,
            });
            out.push(PeakWindow {
                period: cycle,
                start: 0,
                end: sec(e - bins),
            });
        }
    }
    out.retain(|w| w.end > w.start);
    out.sort_by_key(|w| w.start);
    out
}
