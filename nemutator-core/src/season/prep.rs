//! Cleaning a raw series and resampling it onto a regular grid.

use super::Sample;

/// Phase origin of every period: Monday 1970-01-05 00:00:00 UTC.
pub(super) const EPOCH_MONDAY: i64 = 4 * 86_400;

/// A series on a regular grid, scaled to magnitudes of at most one.
#[derive(Clone, Debug)]
pub(super) struct Grid {
    /// Timestamp of slot 0 (a multiple of `step` from [`EPOCH_MONDAY`] when possible).
    pub t0: i64,
    /// Slot length in seconds, at least 1.
    pub step: i64,
    /// Slot means divided by `scale`; empty slots linearly interpolated.
    pub values: Vec<f64>,
    /// Whether a slot held at least one sample.
    pub observed: Vec<bool>,
    /// Largest magnitude of the input (1 when all values are 0).
    pub scale: f64,
}

impl Grid {
    /// Timestamp of slot `i`.
    pub fn time(&self, i: usize) -> i64 {
        let t = self.t0 as i128 + i as i128 * self.step as i128;
        clamp_i64(t)
    }

    /// Seconds from slot 0 to the last slot's end.
    pub fn span(&self) -> i64 {
        clamp_i64(self.values.len() as i128 * self.step as i128)
    }

    /// Slot of every grid point within `bins` equal phase bins of `period`.
    pub fn phase_bins(&self, period: i64, bins: usize) -> Vec<usize> {
        (0..self.values.len())
            .map(|i| phase_bin(self.time(i), period, bins))
            .collect()
    }
}

/// Saturating conversion from `i128`.
pub(super) fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Seconds into `period` of time `t`, counted from [`EPOCH_MONDAY`].
pub(super) fn phase(t: i64, period: i64) -> i64 {
    if period <= 0 {
        return 0;
    }
    // 64-bit fast path; 128-bit only near the ends of the i64 range.
    match t.checked_sub(EPOCH_MONDAY) {
        Some(d) => d.rem_euclid(period),
        None => ((t as i128 - EPOCH_MONDAY as i128).rem_euclid(period as i128)) as i64,
    }
}

/// Which of `bins` equal bins of `period` holds time `t`.
pub(super) fn phase_bin(t: i64, period: i64, bins: usize) -> usize {
    if period <= 0 || bins == 0 {
        return 0;
    }
    let p = phase(t, period);
    let b = match p.checked_mul(bins as i64) {
        Some(m) if bins <= i64::MAX as usize => (m / period) as usize,
        _ => (p as i128 * bins as i128 / period as i128) as usize,
    };
    b.min(bins - 1)
}

/// Index of the cycle of `period` holding `t` (cycle 0 starts at [`EPOCH_MONDAY`]).
pub(super) fn cycle_index(t: i64, period: i64) -> i128 {
    if period <= 0 {
        return 0;
    }
    match t.checked_sub(EPOCH_MONDAY) {
        Some(d) => i128::from(d.div_euclid(period)),
        None => (t as i128 - EPOCH_MONDAY as i128).div_euclid(period as i128),
    }
}

/// Finite samples sorted by time, duplicate timestamps averaged.
pub(super) fn clean(series: &[Sample]) -> Vec<Sample> {
    let mut v: Vec<Sample> = series.iter().copied().filter(|s| s.1.is_finite()).collect();
    v.sort_by_key(|s| s.0);
    let mut out: Vec<Sample> = Vec::with_capacity(v.len());
    let mut k = 0.0_f64;
    for (t, x) in v {
        match out.last_mut() {
            Some(last) if last.0 == t => {
                k += 1.0;
                // Running mean that cannot overflow for finite inputs.
                last.1 = last.1 * ((k - 1.0) / k) + x / k;
            }
            _ => {
                out.push((t, x));
                k = 1.0;
            }
        }
    }
    out
}

/// Median of the positive gaps between consecutive timestamps of a cleaned series.
fn native_step(clean: &[Sample]) -> Option<i64> {
    let mut gaps: Vec<i128> = clean
        .windows(2)
        .map(|w| w[1].0 as i128 - w[0].0 as i128)
        .filter(|d| *d > 0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mid = gaps.len() / 2;
    let (_, m, _) = gaps.select_nth_unstable(mid);
    Some(clamp_i64(*m).max(1))
}

/// Resamples a cleaned series (at least two distinct timestamps) onto a grid
/// of at most `max_points + 1` slots.
pub(super) fn to_grid(clean: &[Sample], max_points: usize) -> Option<Grid> {
    let (first, last) = (clean.first()?.0, clean.last()?.0);
    let native = native_step(clean)? as i128;
    let span = last as i128 - first as i128;
    let max_points = max_points.max(2) as i128;
    let n_native = span / native + 1;
    let k = ((n_native + max_points - 1) / max_points).max(1);
    let step = (native * k).min(i64::MAX as i128 / 4);
    let aligned =
        EPOCH_MONDAY as i128 + (first as i128 - EPOCH_MONDAY as i128).div_euclid(step) * step;
    let t0 = if aligned >= i64::MIN as i128 {
        aligned
    } else {
        first as i128
    };
    let n = usize::try_from((last as i128 - t0) / step + 1).ok()?;
    if n < 2 || n as i128 > max_points + 1 {
        return None;
    }
    let scale = clean.iter().fold(0.0_f64, |m, s| m.max(s.1.abs()));
    let scale = if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        1.0
    };
    let mut sums = vec![0.0_f64; n];
    let mut counts = vec![0_u32; n];
    for &(t, x) in clean {
        let i = ((t as i128 - t0) / step) as usize;
        if let (Some(s), Some(c)) = (sums.get_mut(i), counts.get_mut(i)) {
            *s += x / scale;
            *c += 1;
        }
    }
    let observed: Vec<bool> = counts.iter().map(|c| *c > 0).collect();
    let mut values: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / f64::from(*c) } else { 0.0 })
        .collect();
    interpolate_gaps(&mut values, &observed);
    Some(Grid {
        t0: clamp_i64(t0),
        step: step as i64,
        values,
        observed,
        scale,
    })
}

/// Fills unobserved slots linearly between observed neighbours (constant at the edges).
fn interpolate_gaps(values: &mut [f64], observed: &[bool]) {
    let idx: Vec<usize> = (0..values.len()).filter(|i| observed[*i]).collect();
    let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
        return;
    };
    let (v_first, v_last) = (values[first], values[last]);
    values[..first].iter_mut().for_each(|v| *v = v_first);
    values[last + 1..].iter_mut().for_each(|v| *v = v_last);
    for w in idx.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b > a + 1 {
            let (va, vb) = (values[a], values[b]);
            for (j, v) in values[a + 1..b].iter_mut().enumerate() {
                let f = (j + 1) as f64 / (b - a) as f64;
                *v = va + (vb - va) * f;
            }
        }
    }
}

/// Hampel filter: an observed slot further than `k` robust standard
/// deviations from the median of its `2 * half + 1` neighbours is replaced by
/// that median. The robust scale is floored at 2 % of the standard deviation
/// so that smooth, noiseless series are left alone.
pub(super) fn hampel(values: &mut [f64], observed: &[bool], half: usize, k: f64) {
    let n = values.len();
    if n < 2 * half + 1 {
        return;
    }
    let mut window = Vec::with_capacity(2 * half + 1);
    let mut medians = Vec::with_capacity(n);
    for i in 0..n {
        let lo = i.saturating_sub(half);
        let hi = (i + half + 1).min(n);
        window.clear();
        window.extend_from_slice(&values[lo..hi]);
        medians.push(median(&mut window));
    }
    let mut dev: Vec<f64> = values
        .iter()
        .zip(&medians)
        .map(|(v, m)| (v - m).abs())
        .collect();
    let mad = 1.4826 * median(&mut dev);
    let sd = std_dev(values);
    let scale = mad.max(0.02 * sd);
    if scale <= 0.0 {
        return;
    }
    for i in 0..n {
        if observed[i] && (values[i] - medians[i]).abs() > k * scale {
            values[i] = medians[i];
        }
    }
}

/// Median (reorders `v`); 0 for an empty slice.
pub(super) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

/// Population standard deviation; 0 for fewer than two values.
pub(super) fn std_dev(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64).sqrt()
}

/// Centred moving average over `w` slots (a 2×w average when `w` is even, so
/// that a component of period `w` cancels exactly), extended as a constant
/// at the edges. Shorter series get their mean everywhere.
pub(super) fn moving_average(v: &[f64], w: usize) -> Vec<f64> {
    let n = v.len();
    let w = w.max(1);
    let half = w / 2;
    if n == 0 {
        return Vec::new();
    }
    if n < w + 1 || w == 1 {
        if w == 1 {
            return v.to_vec();
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        return vec![mean; n];
    }
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    let mut acc = 0.0;
    for x in v {
        acc += x;
        prefix.push(acc);
    }
    let mut out = vec![0.0; n];
    let (lo_i, hi_i) = (half, n - half - 1);
    for (i, o) in out.iter_mut().enumerate().take(hi_i + 1).skip(lo_i) {
        *o = if w % 2 == 1 {
            (prefix[i + half + 1] - prefix[i - half]) / w as f64
        } else {
            let inner = prefix[i + half] - prefix[i + 1 - half];
            (inner + 0.5 * (v[i - half] + v[i + half])) / w as f64
        };
    }
    let (a, b) = (out[lo_i], out[hi_i]);
    out[..lo_i].iter_mut().for_each(|o| *o = a);
    out[hi_i + 1..].iter_mut().for_each(|o| *o = b);
    out
}
