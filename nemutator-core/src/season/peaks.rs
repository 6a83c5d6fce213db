//! Peak windows from the seasonal shape: quantile thresholds with
//! hysteresis, then gap filling and a minimum length so the season does not
//! flap. How much the shape is smoothed and how long an off-peak gap must be
//! to split two windows are chosen by back-testing on the held-out last cycle.

use super::config::{PeakScope, SeasonConfig};
use super::prep::{cycle_index, phase, phase_bin, Grid, EPOCH_MONDAY};
use super::profile::{Component, PeakWindow};

/// Most bins the shape of one cycle is evaluated on.
const MAX_SHAPE_BINS: i64 = 4032;

/// How the seasonal shape is turned into windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct WindowRule {
    /// Width in seconds of the centred moving average over the shape (less
    /// than a bin: none).
    pub smooth: i64,
    /// Off-peak gaps shorter than this (in seconds) between two windows are
    /// filled; never less than `min_peak`.
    pub gap: i64,
    /// Hysteresis band in quantile units (see [`SeasonConfig::hysteresis`]).
    pub hysteresis: f64,
}

impl WindowRule {
    /// The rule used when there is nothing to back-test on: smoothing over
    /// `min_peak` and gaps of at least `min_peak`.
    pub(super) fn default_for(config: &SeasonConfig) -> Self {
        Self {
            smooth: config.min_peak,
            gap: config.min_peak,
            hysteresis: config.hysteresis,
        }
    }

    /// The rules the back-test chooses from, most conservative first (a later
    /// one must score strictly better to be chosen): the configured
    /// hysteresis band, half of it or none; smoothing over `min_peak` or
    /// none; gaps of at least one or two `min_peak`.
    fn candidates(config: &SeasonConfig) -> Vec<Self> {
        let m = config.min_peak;
        let mut out = Vec::with_capacity(12);
        for hysteresis in [config.hysteresis, config.hysteresis / 2.0, 0.0] {
            for smooth in [m, 0] {
                for gap in [m, 2 * m] {
                    out.push(Self {
                        smooth,
                        gap,
                        hysteresis,
                    });
                }
            }
        }
        out
    }
}

/// The last stretch of the series held out by the weighting back-test, and
/// the components fitted without it.
pub(super) struct Holdout<'a> {
    /// Components fitted on the grid's slots before `from`.
    pub components: &'a [Component],
    /// The whole grid.
    pub grid: &'a Grid,
    /// First held-out slot.
    pub from: usize,
}

/// The cycle (longest period) and the peak windows within it. Components
/// whose period does not divide the cycle are left out of the shape. With a
/// `holdout`, the [`WindowRule`] is chosen by back-testing: the windows built
/// from the held-out fit's shape are scored (F1) against the slots of the
/// held-out stretch that are in the top `1 - peak_quantile` of their segment
/// (day, by default), i.e. against the very definition of a peak slot.
pub(super) fn peak_windows(
    components: &[Component],
    step: i64,
    config: &SeasonConfig,
    holdout: Option<Holdout<'_>>,
) -> (i64, Vec<PeakWindow>) {
    let Some(shape) = Shape::new(components, step, config) else {
        return (0, Vec::new());
    };
    let rule = holdout
        .and_then(|h| choose_rule(&h, step, config))
        .unwrap_or_else(|| WindowRule::default_for(config));
    let peak = shape.peak_bins(config, rule);
    (shape.cycle, to_windows(&peak, shape.cycle))
}

/// The candidate rule whose windows, built from the held-out fit, best
/// classify the held-out slots; `None` when nothing can be scored.
///
/// The first (most conservative) candidate is the default. Another one
/// replaces it only when it is right on significantly more of the slots
/// where the two disagree (McNemar's exact one-sided sign test at
/// [`SWITCH_LEVEL`]): one held-out cycle of a noisy series cannot tell the
/// rules apart, and then the default, steadiest windows are kept. Among the
/// candidates that pass, the one with the highest F1 wins.
pub(super) fn choose_rule(h: &Holdout<'_>, step: i64, config: &SeasonConfig) -> Option<WindowRule> {
    let shape = Shape::new(h.components, step, config)?;
    let truth = held_out_truth(h, &shape, config);
    if !truth.iter().any(|t| t.1) {
        return None;
    }
    let candidates = WindowRule::candidates(config);
    let default = *candidates.first()?;
    let base = shape.peak_bins(config, default);
    let mut best = (f1(&base, &truth), default);
    for rule in candidates.into_iter().skip(1) {
        let peak = shape.peak_bins(config, rule);
        // Slots only the candidate gets right, and only the default.
        let (mut wins, mut losses) = (0usize, 0usize);
        for &(b, t) in &truth {
            match (peak[b] == t, base[b] == t) {
                (true, false) => wins += 1,
                (false, true) => losses += 1,
                _ => {}
            }
        }
        let score = f1(&peak, &truth);
        if score > best.0 && sign_test_p(wins, losses) <= SWITCH_LEVEL {
            best = (score, rule);
        }
    }
    Some(best.1)
}

/// Level of the sign test a back-tested rule must pass to replace the default.
const SWITCH_LEVEL: f64 = 0.05;

/// F1 of `peak` (per shape bin) against `(bin, truth)` pairs.
fn f1(peak: &[bool], truth: &[(usize, bool)]) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for &(b, t) in truth {
        match (peak[b], t) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            (false, false) => {}
        }
    }
    if tp > 0.0 {
        2.0 * tp / (2.0 * tp + fp + fn_)
    } else {
        0.0
    }
}

/// One-sided p-value of `wins` or more successes in `wins + losses` fair
/// coin flips (exact, summed in log space).
fn sign_test_p(wins: usize, losses: usize) -> f64 {
    let n = wins + losses;
    if wins <= losses {
        return 1.0;
    }
    // ln P(X = k), from ln P(X = 0) = -n ln 2 up.
    let mut log_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut tail = Vec::with_capacity(n - wins + 1);
    for k in 1..=n {
        log_pmf += ((n - k + 1) as f64 / k as f64).ln();
        if k >= wins {
            tail.push(log_pmf);
        }
    }
    let top = tail.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v));
    (top.exp() * tail.iter().map(|v| (v - top).exp()).sum::<f64>()).min(1.0)
}

/// Every observed held-out slot as `(shape bin, whether it is among the top
/// 1 - peak_quantile of its segment)`. Segments with fewer than half their
/// slots observed are left out.
fn held_out_truth(h: &Holdout<'_>, shape: &Shape, config: &SeasonConfig) -> Vec<(usize, bool)> {
    let g = h.grid;
    let seg = shape.segment_len.max(1);
    let key = |t: i64| (cycle_index(t, shape.cycle), phase(t, shape.cycle) / seg);
    let expected = (seg / g.step.max(1)).max(1) as usize;
    let mut out = Vec::new();
    let mut group: Vec<usize> = Vec::new();
    let flush = |group: &mut Vec<usize>, out: &mut Vec<(usize, bool)>| {
        if 2 * group.len() >= expected {
            group.sort_by(|a, b| g.values[*b].total_cmp(&g.values[*a]));
            let k = ((1.0 - config.peak_quantile) * group.len() as f64).round() as usize;
            for (r, i) in group.iter().enumerate() {
                out.push((phase_bin(g.time(*i), shape.cycle, shape.bins), r < k));
            }
        }
        group.clear();
    };
    let mut current = None;
    for i in h.from..g.values.len() {
        if !g.observed[i] {
            continue;
        }
        let k = key(g.time(i));
        if current != Some(k) {
            flush(&mut group, &mut out);
            current = Some(k);
        }
        group.push(i);
    }
    flush(&mut group, &mut out);
    out
}

/// The seasonal shape of one cycle on `bins` equal bins.
struct Shape {
    cycle: i64,
    bins: usize,
    raw: Vec<f64>,
    /// Length of the stretch each peak quantile is taken over.
    segment_len: i64,
    /// Segment of each bin.
    segment: Vec<usize>,
}

impl Shape {
    fn new(components: &[Component], step: i64, config: &SeasonConfig) -> Option<Self> {
        let cycle = components
            .iter()
            .map(|c| c.period)
            .filter(|p| *p > 0)
            .max()?;
        let parts: Vec<&Component> = components
            .iter()
            .filter(|c| c.period > 0 && cycle % c.period == 0)
            .collect();
        let bins = (cycle / step.max(1)).clamp(2, MAX_SHAPE_BINS) as usize;
        let raw: Vec<f64> = (0..bins)
            .map(|b| {
                let t = EPOCH_MONDAY.saturating_add(centre(b, bins, cycle));
                parts.iter().map(|c| c.value_at(t)).sum()
            })
            .collect();
        let segment_len = match config.peak_scope {
            PeakScope::LongestPeriod => cycle,
            PeakScope::ShortestPeriod => parts.iter().map(|c| c.period).min().unwrap_or(cycle),
        };
        let segment = (0..bins)
            .map(|b| (centre(b, bins, cycle) / segment_len.max(1)) as usize)
            .collect();
        Some(Self {
            cycle,
            bins,
            raw,
            segment_len,
            segment,
        })
    }

    /// Bins of `seconds`, rounded down (at least 1) or up.
    fn to_bins(&self, seconds: i64, up: bool) -> usize {
        let (s, b, c) = (seconds as i128, self.bins as i128, self.cycle as i128);
        let v = if up { (s * b + c - 1) / c } else { s * b / c };
        usize::try_from(v).unwrap_or(0)
    }

    /// Whether each bin is peak under `rule`.
    fn peak_bins(&self, config: &SeasonConfig, rule: WindowRule) -> Vec<bool> {
        let bins = self.bins;
        // Smoothing keeps estimation noise in the profile from cutting
        // windows into pieces.
        let width = self.to_bins(rule.smooth, false).clamp(1, bins);
        let shape = circular_mean(&self.raw, width);
        let segment_of = |b: usize| self.segment[b];
        let segments = segment_of(bins - 1) + 1;
        // Per-segment thresholds (double threshold, as in hysteresis edge
        // linking): a window is a stretch at or above the peak quantile that
        // somewhere reaches the quantile plus the hysteresis band. Bumps that
        // barely cross the quantile make no window, and a window has no lag
        // (it is symmetric around a symmetric bump). A slot at its segment's
        // minimum is never peak.
        let mut per_segment: Vec<Vec<f64>> = vec![Vec::new(); segments];
        for (b, v) in shape.iter().enumerate() {
            per_segment[segment_of(b)].push(*v);
        }
        let mut thresholds = vec![(0.0, 0.0, 0.0); segments];
        for (vals, th) in per_segment.iter_mut().zip(thresholds.iter_mut()) {
            vals.sort_by(f64::total_cmp);
            let min = vals.first().copied().unwrap_or(0.0);
            *th = (
                top_share(vals, 1.0 - config.peak_quantile - rule.hysteresis),
                top_share(vals, 1.0 - config.peak_quantile),
                min,
            );
        }
        let range = shape.iter().fold(f64::NEG_INFINITY, |m, v| m.max(*v))
            - shape.iter().fold(f64::INFINITY, |m, v| m.min(*v));
        if !(range > 0.0 && range.is_finite()) {
            return vec![false; bins];
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
        let min_bins = self.to_bins(config.min_peak, true);
        let gap_bins = self.to_bins(rule.gap.max(config.min_peak), true);
        let before_fill = peak.clone();
        set_short_runs(&mut peak, false, gap_bins, true);
        if peak.iter().all(|p| *p) {
            peak = before_fill;
        }
        set_short_runs(&mut peak, true, min_bins, false);
        peak
    }
}

/// The least of the top `share` of an ascending slice, counted in whole
/// values (`share * len` rounded, at least one): the same rounding as the
/// back-test's definition of a peak slot. 0 when empty.
fn top_share(sorted: &[f64], share: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let k = ((share * n as f64).round() as usize).clamp(1, n);
    sorted[n - k]
}

/// Seconds from the cycle's origin to the centre of bin `b` of `bins`.
fn centre(b: usize, bins: usize, cycle: i64) -> i64 {
    ((2 * b as i128 + 1) * cycle as i128 / (2 * bins.max(1) as i128)) as i64
}

/// Centred circular moving average over `width` bins. An even width is a
/// 2×`width` average (the two end bins at half weight), so the result is not
/// shifted by half a bin.
fn circular_mean(v: &[f64], width: usize) -> Vec<f64> {
    let n = v.len();
    if width <= 1 || n == 0 {
        return v.to_vec();
    }
    let width = width.min(n);
    let half = width / 2;
    // Prefix sums over the series laid out three times.
    let mut prefix = Vec::with_capacity(3 * n + 1);
    prefix.push(0.0);
    let mut acc = 0.0;
    for k in 0..3 * n {
        acc += v[k % n];
        prefix.push(acc);
    }
    (0..n)
        .map(|i| {
            let c = i + n;
            let sum = if width % 2 == 1 {
                prefix[c + half + 1] - prefix[c - half]
            } else {
                prefix[c + half] - prefix[c + 1 - half]
                    + 0.5 * (v[(c - half) % n] + v[(c + half) % n])
            };
            sum / width as f64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_is_exact() {
        assert!((sign_test_p(5, 0) - 1.0 / 32.0).abs() < 1e-12);
        assert!((sign_test_p(3, 0) - 1.0 / 8.0).abs() < 1e-12);
        // P(X >= 2 | n = 3) = 4 / 8.
        assert!((sign_test_p(2, 1) - 0.5).abs() < 1e-12);
        assert_eq!(sign_test_p(4, 4), 1.0);
        assert!(sign_test_p(600, 400) < 1e-9);
    }

    #[test]
    fn even_smoothing_is_centred() {
        let v = [0.0, 0.0, 1.0, 3.0, 1.0, 0.0, 0.0, 0.0];
        let s = circular_mean(&v, 2);
        // Symmetric around bin 3, as the input.
        assert_eq!(s[2], s[4]);
        assert!(s[3] > s[2]);
        assert!((s.iter().sum::<f64>() - v.iter().sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn top_share_counts_whole_values() {
        let v: Vec<f64> = (0..48).map(f64::from).collect();
        // 30 % of 48 slots is 14.4: the top 14.
        assert_eq!(top_share(&v, 0.3), 34.0);
        assert_eq!(top_share(&v, 0.0), 47.0);
        assert_eq!(top_share(&[], 0.3), 0.0);
    }
}
