//! The learned profile: periods, periodic components, level and peak
//! windows, with forecasting and season lookup.

use serde::{Deserialize, Serialize};

use super::prep::phase;
use super::{Sample, Season};
use crate::metrics::PeriodicMask;

/// Version of the serialised [`SeasonProfile`] layout.
pub(super) const PROFILE_VERSION: u32 = 1;
/// Most predictions [`SeasonProfile::predict`] returns in one call.
pub const MAX_PREDICTIONS: usize = 1_000_000;

/// A periodic component: the mean deviation from the level in each of
/// `values.len()` equal phase bins of `period` seconds. Bin 0 starts on
/// Monday 00:00 UTC for a weekly period, at 00:00 UTC for a daily one
/// (phases are counted from Monday 1970-01-05 00:00 UTC).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Period in seconds.
    pub period: i64,
    /// Deviation from the level per phase bin, in the series' unit.
    pub values: Vec<f64>,
}

impl Component {
    /// The component at time `t`, linearly interpolated between bin centres
    /// (0 for a malformed component).
    pub fn value_at(&self, t: i64) -> f64 {
        let b = self.values.len();
        if self.period <= 0 || b == 0 {
            return 0.0;
        }
        let pos = phase(t, self.period) as f64 / self.period as f64 * b as f64 - 0.5;
        let i0 = pos.floor();
        let frac = pos - i0;
        let i0 = (i0 as i64).rem_euclid(b as i64) as usize;
        let i1 = (i0 + 1) % b;
        let v = self.values[i0] * (1.0 - frac) + self.values[i1] * frac;
        if v.is_finite() {
            v
        } else {
            0.0
        }
    }
}

/// A peak window within one cycle of `period` seconds: phases `start..end`
/// (seconds since the cycle's origin, `0 <= start < end <= period`). The
/// origin is Monday 00:00 UTC for a weekly period and 00:00 UTC for a daily
/// one. A window crossing the cycle's end is given as two windows. JSON:
/// `{"period": 604800, "start": 28800, "end": 64800}` is Monday 08:00–18:00 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeakWindow {
    /// Length of the cycle in seconds.
    pub period: i64,
    /// First second of the window, since the cycle's origin.
    pub start: i64,
    /// End of the window (exclusive), since the cycle's origin.
    pub end: i64,
}

impl PeakWindow {
    /// Whether the window holds the phase `p` (seconds into the cycle).
    pub fn contains_phase(&self, p: i64) -> bool {
        self.start <= p && p < self.end
    }

    /// Human form such as `Mon 08:00–Mon 18:00` (weekday shown for periods
    /// longer than a day).
    pub fn label(&self) -> String {
        let fmt = |s: i64| {
            let (d, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
            let hm = format!("{:02}:{:02}", rem / 3600, rem % 3600 / 60);
            if self.period > 86_400 {
                let day =
                    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][d.rem_euclid(7) as usize];
                format!("{day} {hm}")
            } else if s >= 86_400 {
                "24:00".to_string()
            } else {
                hm
            }
        };
        format!("{}–{}", fmt(self.start), fmt(self.end))
    }
}

/// One step of a forecast. JSON: `{"timestamp":T,"season":"peak","forecast":V}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Unix seconds.
    pub timestamp: i64,
    /// Season at `timestamp`, lead time applied.
    pub season: Season,
    /// Forecast value.
    pub forecast: f64,
}

/// Why a candidate period was or was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestOutcome {
    /// Significant and confirmed: reported.
    Accepted,
    /// The data spans too few cycles, or the period is under three grid slots.
    Untestable,
    /// Did not beat the shuffles.
    NotSignificant,
    /// Significant but explains too little variance.
    Weak,
    /// The autocorrelation has no positive local maximum at this lag.
    NoAutocorrelationPeak,
    /// Accepted, then folded into a longer period it is a harmonic of.
    Harmonic,
}

/// The record of one candidate's test, kept in the profile for diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodTest {
    /// Candidate period in seconds.
    pub period: i64,
    /// Whether the periodogram proposed it (rather than the configuration).
    pub discovered: bool,
    /// Share of residual variance explained by the folded profile.
    pub statistic: f64,
    /// Mean of the statistic over the rotation shuffles.
    pub null_mean: f64,
    /// Standard score of the statistic against the shuffles.
    pub z: f64,
    /// Autocorrelation of the residual at this lag.
    pub autocorrelation: f64,
    /// The verdict.
    pub outcome: TestOutcome,
}

/// What the season model learned about one series. Serialisable, so that
/// it can be stored (memory, Redis) and survive restarts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SeasonProfile {
    pub(super) version: u32,
    pub(super) periods: Vec<i64>,
    pub(super) components: Vec<Component>,
    pub(super) level: f64,
    pub(super) cycle: i64,
    pub(super) peak_windows: Vec<PeakWindow>,
    pub(super) lead: i64,
    pub(super) step: i64,
    pub(super) fitted_from: i64,
    pub(super) fitted_to: i64,
    pub(super) half_life_cycles: f64,
    pub(super) level_window: i64,
    pub(super) tests: Vec<PeriodTest>,
}

impl SeasonProfile {
    /// A profile without rhythm: one season (off-peak), forecast = `level`.
    pub fn flat(level: f64, lead: i64) -> Self {
        Self {
            version: PROFILE_VERSION,
            periods: Vec::new(),
            components: Vec::new(),
            level: if level.is_finite() { level } else { 0.0 },
            cycle: 0,
            peak_windows: Vec::new(),
            lead: lead.max(0),
            step: 0,
            fitted_from: 0,
            fitted_to: 0,
            half_life_cycles: 0.0,
            level_window: 0,
            tests: Vec::new(),
        }
    }

    /// Significant periods in seconds, ascending; empty when the series has
    /// no significant periodicity.
    pub fn periods(&self) -> &[i64] {
        &self.periods
    }

    /// Peak windows within one cycle of [`cycle`](Self::cycle) (empty when
    /// there is no rhythm).
    pub fn peak_windows(&self) -> Vec<PeakWindow> {
        self.peak_windows.clone()
    }

    /// The periodic components behind the forecast.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The forecast level (deseasonalised mean of the latest history).
    pub fn level(&self) -> f64 {
        self.level
    }

    /// Length in seconds of the cycle the peak windows repeat over (the
    /// longest period; 0 without rhythm).
    pub fn cycle(&self) -> i64 {
        self.cycle
    }

    /// Lead time in seconds applied by [`season_at`](Self::season_at).
    pub fn lead(&self) -> i64 {
        self.lead
    }

    /// The same profile with another lead time (negative values count as 0).
    pub fn with_lead(mut self, lead: i64) -> Self {
        self.lead = lead.max(0);
        self
    }

    /// Analysis grid step in seconds (0 when the series was too short for one).
    pub fn step(&self) -> i64 {
        self.step
    }

    /// First and last timestamp of the fitted series.
    pub fn fitted_range(&self) -> (i64, i64) {
        (self.fitted_from, self.fitted_to)
    }

    /// Recency half-life (cycles of the longest period; 0 = equal weights)
    /// and level window (seconds) the fit used, after back-testing.
    pub fn weighting(&self) -> (f64, i64) {
        (self.half_life_cycles, self.level_window)
    }

    /// Every candidate period's test record.
    pub fn tests(&self) -> &[PeriodTest] {
        &self.tests
    }

    /// Whether `t` lies inside a peak window (no lead time).
    pub fn is_peak(&self, t: i64) -> bool {
        if self.cycle <= 0 {
            return false;
        }
        let p = phase(t, self.cycle);
        self.peak_windows.iter().any(|w| w.contains_phase(p))
    }

    /// Season at `t`, applying the lead time: peak from `lead` seconds before
    /// a window starts until it ends.
    pub fn season_at(&self, t: i64) -> Season {
        if self.is_peak(t) {
            return Season::Peak;
        }
        if self.cycle <= 0 || self.lead <= 0 {
            return Season::OffPeak;
        }
        let p = phase(t, self.cycle) as i128;
        let soon = self.peak_windows.iter().any(|w| {
            let until_start = (w.start as i128 - p).rem_euclid(self.cycle as i128);
            until_start <= self.lead as i128
        });
        if soon {
            Season::Peak
        } else {
            Season::OffPeak
        }
    }

    /// Forecast value at `t`: level plus every periodic component.
    pub fn forecast(&self, t: i64) -> f64 {
        let v = self.level + self.components.iter().map(|c| c.value_at(t)).sum::<f64>();
        if v.is_finite() {
            v
        } else if v == f64::INFINITY {
            f64::MAX
        } else if v == f64::NEG_INFINITY {
            f64::MIN
        } else {
            0.0
        }
    }

    /// One prediction per `step` seconds from `from` to `to` inclusive
    /// (empty when `step <= 0` or `to < from`; at most [`MAX_PREDICTIONS`]).
    pub fn predict(&self, from: i64, to: i64, step: i64) -> Vec<Prediction> {
        if step <= 0 || to < from {
            return Vec::new();
        }
        let count = ((to as i128 - from as i128) / step as i128 + 1).min(MAX_PREDICTIONS as i128);
        (0..count)
            .map(|i| {
                let t = (from as i128 + i * step as i128) as i64;
                Prediction {
                    timestamp: t,
                    season: self.season_at(t),
                    forecast: self.forecast(t),
                }
            })
            .collect()
    }

    /// The peak windows as a periodic mask (no lead time), what a season's
    /// recommendation is computed over; the off-peak one is its
    /// [complement](PeriodicMask::complement). `None` without rhythm.
    pub fn peak_mask(&self) -> Option<PeriodicMask> {
        if self.cycle <= 0 || self.periods.is_empty() {
            return None;
        }
        PeriodicMask::new(
            self.cycle,
            self.peak_windows.iter().map(|w| (w.start, w.end)),
        )
    }

    /// Splits history into (peak, off-peak) samples by the peak windows,
    /// *without* lead time, so that each brainset is computed from its own
    /// season's history. Order is kept; non-finite values are dropped.
    pub fn split_by_season(&self, series: &[Sample]) -> (Vec<Sample>, Vec<Sample>) {
        series
            .iter()
            .filter(|s| s.1.is_finite())
            .partition(|s| self.is_peak(s.0))
    }
}
