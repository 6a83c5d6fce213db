//! The usage statistic, defined once: what every backend computes, server-side
//! where it can (PromQL), from raw samples where it cannot (the file source,
//! with the reference implementation below).
//!
//! For one workload container, one resource, a window ending at `end` and a
//! [`Resolution`] (`step`, `rate_window`):
//!
//! 1. **Steps** are the multiples of `step` since the unix epoch in
//!    `(end - window, end]` ([`steps`]), as Prometheus aligns a subquery
//!    `[window:step]`.
//! 2. **Per pod**, the value at step `t` is, for memory, the largest
//!    `container_memory_working_set_bytes` sample in `(t - step, t]`
//!    (`max_over_time(...[step])`); for CPU, the rate of
//!    `container_cpu_usage_seconds_total` over `(t - rate_window, t]` exactly
//!    as PromQL's `rate()` computes it (counter resets, extrapolation to the
//!    window's edges: [`prometheus_rate`]). A pod without samples there has
//!    no value at `t`.
//! 3. **Per workload**, the value at `t` is the maximum over its pods (every
//!    ReplicaSet generation of a Deployment pooled): `max by (workload,
//!    container)`. A step where no pod has a value is not counted.
//! 4. The **statistic** is the quantile of those per-step maxima
//!    (`quantile_over_time`, linear interpolation between ranks; [`quantile`])
//!    over the steps inside the season's [`PeriodicMask`], if any.
//! 5. Its **history** is the number of hourly checkpoints (the multiples of
//!    [`CHECKPOINT`] in the window, inside the mask) at which the workload
//!    has a value, times an hour: `count_over_time(...[window:1h])`, 60 times
//!    cheaper for a server than counting every 1-minute step, and as good a
//!    measure of how much of the window the workload was seen in.
//!
//! Windows are half-open on the left, so every sample belongs to exactly one
//! step. PromQL renders a window of `d` as `[d - 1ms]`, which selects the
//! same samples in Prometheus 2 (closed ranges) and 3 (left-open ones).
//!
//! Season masks are periodic: windows of a cycle (a week, a day, or any
//! period) counted from Monday 1970-01-05 00:00 UTC, so PromQL expresses them
//! with `day_of_week()`, `hour()` and `minute()` of the step's time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{quantile, Resource, StatSpec, UsageStat};

/// Monday 1970-01-05 00:00 UTC: the origin of every periodic phase.
pub const EPOCH_MONDAY: i64 = 345_600;

/// Seconds in a week.
pub const WEEK: i64 = 604_800;

/// Spacing of the checkpoints history is counted at, in seconds.
pub const CHECKPOINT: i64 = 3600;

/// The time grid of the statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resolution {
    /// Spacing of the steps, a whole number of minutes.
    #[serde(with = "super::secs")]
    pub step: Duration,
    /// The CPU rate at a step is taken over this window ending at the step.
    #[serde(with = "super::secs")]
    pub rate_window: Duration,
}

impl Resolution {
    /// What suits samples a minute apart or closer: 5-minute steps, rates
    /// over 5 minutes (the kubernetes-mixin recording rules' window). Rates
    /// over 5 minutes taken every minute would overlap by four fifths: five
    /// times the work for a server, hardly more information.
    pub const DEFAULT: Resolution = Resolution {
        step: Duration::from_secs(300),
        rate_window: Duration::from_secs(300),
    };

    /// A resolution with `step` rounded up to a whole minute (at least one)
    /// and a rate window of at least one step.
    pub fn new(step: Duration, rate_window: Duration) -> Self {
        let step = Duration::from_secs(step.as_secs().max(1).div_ceil(60) * 60);
        Resolution {
            step,
            rate_window: rate_window.max(step),
        }
    }

    /// What suits samples `interval` seconds apart: steps of the interval
    /// rounded up to a minute, and at least [`DEFAULT`](Self::DEFAULT)'s;
    /// rates over two intervals and at least 5 minutes, so that every rate
    /// window holds two samples.
    pub fn for_interval(interval: Duration) -> Self {
        let native = Self::new(interval, Duration::ZERO).step;
        Resolution {
            step: native.max(Self::DEFAULT.step),
            rate_window: (2 * native).max(Self::DEFAULT.rate_window),
        }
    }

    /// The step in seconds.
    pub fn step_secs(&self) -> i64 {
        i64::try_from(self.step.as_secs())
            .unwrap_or(i64::MAX)
            .max(60)
    }
}

impl Default for Resolution {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The step times of a window: the multiples of `step` in
/// `(end - window, end]`, unix seconds, ascending.
pub fn steps(end: i64, window: Duration, step: i64) -> impl Iterator<Item = i64> {
    let step = step.max(1);
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let first = end.saturating_sub(window).div_euclid(step) * step + step;
    let last = end.div_euclid(step) * step;
    (0..)
        .map(move |i: i64| first.saturating_add(i.saturating_mul(step)))
        .take_while(move |&t| t <= last)
}

/// PromQL's `rate()` (Prometheus 2.x and 3.x) of the counter samples
/// `(milliseconds, value)` selected by a range `(range_end - range_ms,
/// range_end]`: the increase (counter resets added back), extrapolated to
/// the range's edges when the first and last samples lie within 1.1 average
/// intervals of them (and never below a zero counter), per second of the
/// range. `None` with fewer than two samples.
pub fn prometheus_rate(samples: &[(i64, f64)], range_end: i64, range_ms: i64) -> Option<f64> {
    let (&(t0, v0), &(t1, v1)) = (samples.first()?, samples.last()?);
    if samples.len() < 2 || t1 <= t0 || range_ms <= 0 {
        return None;
    }
    let mut increase = v1 - v0;
    let mut prev = 0.0;
    for &(_, v) in samples {
        if v < prev {
            increase += prev;
        }
        prev = v;
    }
    // As Prometheus with a range of `range_ms - 1` selecting `[end - range + 1, end]`.
    let range_start = range_end - range_ms + 1;
    let range_secs = (range_ms - 1) as f64 / 1000.0;
    let mut to_start = (t0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - t1) as f64 / 1000.0;
    let sampled = (t1 - t0) as f64 / 1000.0;
    let average = sampled / (samples.len() - 1) as f64;
    if increase > 0.0 && v0 >= 0.0 {
        to_start = to_start.min(sampled * (v0 / increase));
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    Some(increase * (interval / sampled) / range_secs)
}

/// The samples of `series` (sorted by time, milliseconds) in
/// `(end - range_ms, end]`.
fn select(series: &[(i64, f64)], end: i64, range_ms: i64) -> &[(i64, f64)] {
    let lo = series.partition_point(|p| p.0 <= end - range_ms);
    let hi = series.partition_point(|p| p.0 <= end);
    &series[lo..hi.max(lo)]
}

/// The value of one pod's container at step `t` (unix seconds), from its raw
/// samples `(milliseconds, value)` sorted by time: the largest working set
/// in the step, or the CPU rate over the rate window.
pub fn pod_value(
    resource: Resource,
    series: &[(i64, f64)],
    t: i64,
    res: &Resolution,
) -> Option<f64> {
    let end = t.saturating_mul(1000);
    match resource {
        Resource::Memory => {
            let range = res.step_secs() * 1000;
            select(series, end, range)
                .iter()
                .map(|p| p.1)
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        }
        Resource::Cpu => {
            let range = i64::try_from(res.rate_window.as_millis()).unwrap_or(i64::MAX);
            prometheus_rate(select(series, end, range), end, range)
        }
    }
}

/// The value of a workload container at `t`: the maximum over its pods.
pub fn workload_value(
    resource: Resource,
    pods: &[&[(i64, f64)]],
    t: i64,
    res: &Resolution,
) -> Option<f64> {
    pods.iter()
        .filter_map(|s| pod_value(resource, s, t, res))
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

/// The per-step maximum over the pods of one workload container: `(step,
/// value)` for every step of the window where a pod has a value.
pub fn workload_steps(
    resource: Resource,
    pods: &[&[(i64, f64)]],
    end: i64,
    window: Duration,
    res: &Resolution,
) -> Vec<(i64, f64)> {
    steps(end, window, res.step_secs())
        .filter_map(|t| workload_value(resource, pods, t, res).map(|v| (t, v)))
        .collect()
}

/// The hourly checkpoints of the window at which the workload container
/// has a value (see the module docs, 5).
pub fn workload_checkpoints(
    resource: Resource,
    pods: &[&[(i64, f64)]],
    end: i64,
    window: Duration,
    res: &Resolution,
) -> Vec<i64> {
    steps(end, window, CHECKPOINT)
        .filter(|&t| workload_value(resource, pods, t, res).is_some())
        .collect()
}

/// The per-step sum over the pods of a workload (its total usage): what
/// season learning fits.
pub fn workload_sum(
    resource: Resource,
    pods: &[&[(i64, f64)]],
    end: i64,
    window: Duration,
    res: &Resolution,
) -> Vec<(i64, f64)> {
    steps(end, window, res.step_secs())
        .filter_map(|t| {
            pods.iter()
                .filter_map(|s| pod_value(resource, s, t, res))
                .fold(None, |m: Option<f64>, v| Some(m.unwrap_or(0.0) + v))
                .map(|v| (t, v))
        })
        .collect()
}

/// The statistic of `spec` from per-step values and the checkpoints with a
/// value: the quantile over the steps inside the mask, and the history of
/// the checkpoints inside it. `None` when no step is inside.
pub fn summarize(steps: &[(i64, f64)], checkpoints: &[i64], spec: &StatSpec) -> Option<UsageStat> {
    let inside = |t: i64| spec.mask.as_ref().is_none_or(|m| m.contains(t));
    let mut values: Vec<f64> = steps
        .iter()
        .filter(|(t, _)| inside(*t))
        .map(|p| p.1)
        .collect();
    let value = quantile(&mut values, spec.quantile)?;
    let hours = checkpoints.iter().filter(|t| inside(**t)).count() as u64;
    Some(UsageStat {
        value,
        samples: hours,
        history_secs: i64::try_from(hours)
            .unwrap_or(i64::MAX)
            .saturating_mul(CHECKPOINT),
    })
}

/// A periodic mask: the phases `[start, end)` of a cycle of `period` seconds
/// that count, the cycle starting on Monday 1970-01-05 00:00 UTC (so a weekly
/// mask's phase is the time since Monday 00:00 UTC, a daily one's the time
/// of day, UTC). Windows are sorted, disjoint and within `[0, period)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeriodicMask {
    period: i64,
    windows: Vec<(i64, i64)>,
}

impl PeriodicMask {
    /// A mask of `period` seconds (at least a minute) holding `windows`
    /// (clipped to the cycle, sorted and merged); `None` for a shorter period.
    pub fn new(period: i64, windows: impl IntoIterator<Item = (i64, i64)>) -> Option<Self> {
        if period < 60 {
            return None;
        }
        let mut w: Vec<(i64, i64)> = windows
            .into_iter()
            .map(|(a, b)| (a.clamp(0, period), b.clamp(0, period)))
            .filter(|(a, b)| a < b)
            .collect();
        w.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(w.len());
        for (a, b) in w {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Some(PeriodicMask {
            period,
            windows: merged,
        })
    }

    /// Length of the cycle in seconds.
    pub fn period(&self) -> i64 {
        self.period
    }

    /// The windows, as phases `[start, end)` of the cycle.
    pub fn windows(&self) -> &[(i64, i64)] {
        &self.windows
    }

    /// The phase of `t` in the cycle.
    pub fn phase(&self, t: i64) -> i64 {
        (i128::from(t) - i128::from(EPOCH_MONDAY)).rem_euclid(i128::from(self.period)) as i64
    }

    /// Whether `t` (unix seconds) falls in a window.
    pub fn contains(&self, t: i64) -> bool {
        let p = self.phase(t);
        self.windows.iter().any(|&(a, b)| a <= p && p < b)
    }

    /// The mask of every other phase.
    pub fn complement(&self) -> Self {
        let mut out = Vec::with_capacity(self.windows.len() + 1);
        let mut at = 0;
        for &(a, b) in &self.windows {
            if a > at {
                out.push((at, a));
            }
            at = b;
        }
        if at < self.period {
            out.push((at, self.period));
        }
        PeriodicMask {
            period: self.period,
            windows: out,
        }
    }

    /// Whether the cycle divides a week into whole minutes, so that weekday,
    /// hour and minute express the phase.
    pub fn is_weekly(&self) -> bool {
        self.period % 60 == 0 && WEEK % self.period == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mk_res(step: u64, rate: u64) -> Resolution {
        Resolution::new(Duration::from_secs(step), Duration::from_secs(rate))
    }

    #[test]
    fn steps_are_aligned_and_left_open() {
        let s: Vec<i64> = steps(1_000, Duration::from_secs(300), 60).collect();
        assert_eq!(s, vec![720, 780, 840, 900, 960]);
        let s: Vec<i64> = steps(960, Duration::from_secs(120), 60).collect();
        assert_eq!(s, vec![900, 960], "840 is the open edge");
    }

    #[test]
    fn rate_matches_prometheus_on_aligned_minute_samples() {
        // One sample a minute, 0.5 core: a 5-minute window holds 5 samples
        // (the one at the open edge is out) and extrapolates to the edge.
        let series: Vec<(i64, f64)> = (0..20).map(|m| (m * 60_000, 30.0 * m as f64)).collect();
        let r = prometheus_rate(select(&series, 600_000, 300_000), 600_000, 300_000);
        let r = r.unwrap_or_default();
        assert!((r - 0.5).abs() < 1e-5, "{r}");
        // A reset adds the value before it back.
        let reset = [(0, 100.0), (60_000, 130.0), (120_000, 10.0)];
        let r = prometheus_rate(&reset, 120_000, 120_001).unwrap_or_default();
        // increase 130 - 100 + 10 = 40 over 120 s, edges within threshold.
        assert!((r - 40.0 / 120.0).abs() < 1e-3, "{r}");
        assert_eq!(prometheus_rate(&series[..1], 60_000, 300_000), None);
    }

    #[test]
    fn rate_does_not_extrapolate_below_zero() {
        // A counter starting at 0.5 with 1/s: the zero point is 0.5 s before
        // the first sample, closer than the window's edge.
        let s = [(100_000, 0.5), (110_000, 10.5), (120_000, 20.5)];
        let r = prometheus_rate(&s, 120_000, 60_000).unwrap_or_default();
        // interval 20 + 0.5 (to zero) + 0 (to end) = 20.5 -> 20 * 20.5/20 / 59.999
        assert!((r - 20.5 / 59.999).abs() < 1e-9, "{r}");
    }

    #[test]
    fn workload_takes_the_largest_pod_per_step() {
        let a: Vec<(i64, f64)> = (0..10).map(|m| (m * 60_000 + 5_000, 10.0)).collect();
        let b: Vec<(i64, f64)> = (5..10).map(|m| (m * 60_000 + 5_000, 30.0)).collect();
        let res = mk_res(60, 300);
        let s = workload_steps(
            Resource::Memory,
            &[&a, &b],
            600,
            Duration::from_secs(600),
            &res,
        );
        assert_eq!(s.len(), 10);
        assert_eq!(s[0], (60, 10.0));
        assert_eq!(s[9], (600, 30.0));
        let sum = workload_sum(
            Resource::Memory,
            &[&a, &b],
            600,
            Duration::from_secs(600),
            &res,
        );
        assert_eq!(sum[9], (600, 40.0));
        let spec = StatSpec {
            quantile: 0.5,
            mask: None,
        };
        // The ten minutes of data hold no hourly checkpoint.
        let hours = workload_checkpoints(
            Resource::Memory,
            &[&a, &b],
            600,
            Duration::from_secs(600),
            &res,
        );
        assert!(hours.is_empty());
        let stat = summarize(&s, &hours, &spec);
        assert_eq!(
            stat.map(|s| (s.value, s.samples, s.history_secs)),
            Some((20.0, 0, 0))
        );
        let stat = summarize(&s, &[3600, 7200], &spec);
        assert_eq!(stat.map(|s| (s.samples, s.history_secs)), Some((2, 7200)));
    }

    #[test]
    fn masks_are_periodic() {
        // Weekdays 08:00-18:00 as a weekly mask.
        let days = (0..5).map(|d| (d * 86_400 + 8 * 3600, d * 86_400 + 18 * 3600));
        let m = PeriodicMask::new(WEEK, days).unwrap_or_else(|| panic!("mask"));
        let monday = 1_764_547_200; // 2025-12-01 00:00 UTC, a Monday
        assert!(!m.contains(monday));
        assert!(m.contains(monday + 9 * 3600));
        assert!(!m.contains(monday + 5 * 86_400 + 9 * 3600), "Saturday");
        let c = m.complement();
        assert!(c.contains(monday) && !c.contains(monday + 9 * 3600));
        assert!(m.is_weekly());
        let odd = PeriodicMask::new(5 * 86_400, [(0, 3600)]).unwrap_or_else(|| panic!("mask"));
        assert!(!odd.is_weekly());
        assert_eq!(PeriodicMask::new(30, [(0, 10)]), None);
        let merged = PeriodicMask::new(86_400, [(10, 20), (15, 30), (-5, 5), (90_000, 95_000)]);
        assert_eq!(
            merged.map(|m| m.windows().to_vec()),
            Some(vec![(0, 5), (10, 30)])
        );
    }

    #[test]
    fn resolutions_round_to_minutes() {
        assert_eq!(
            Resolution::for_interval(Duration::from_secs(900)),
            mk_res(900, 1800)
        );
        assert_eq!(
            Resolution::for_interval(Duration::from_secs(15)),
            Resolution::DEFAULT
        );
        assert_eq!(mk_res(90, 0).step, Duration::from_secs(120));
    }

    proptest! {
        #[test]
        fn a_mask_and_its_complement_partition_time(
            windows in proptest::collection::vec((0i64..86_400, 0i64..86_400), 0..6),
            t in 0i64..4_000_000_000,
        ) {
            let m = PeriodicMask::new(86_400, windows).unwrap_or_else(|| panic!("mask"));
            prop_assert!(m.contains(t) != m.complement().contains(t));
        }

        #[test]
        fn rate_of_a_steady_counter_is_its_slope(
            slope in 0.001f64..100.0,
            interval in 10i64..120,
            offset in 0i64..10,
        ) {
            let s: Vec<(i64, f64)> = (0..100)
                .map(|i| ((offset + i * interval) * 1000, 1e6 + slope * (i * interval) as f64))
                .collect();
            let end = (offset + 60 * interval) * 1000;
            let range = 10 * interval * 1000;
            let r = prometheus_rate(select(&s, end, range), end, range).unwrap_or_default();
            prop_assert!((r - slope).abs() / slope < 1e-3, "{} vs {}", r, slope);
        }
    }
}
