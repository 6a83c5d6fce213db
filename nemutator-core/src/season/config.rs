//! Tunables of the default season model.

use serde::{Deserialize, Serialize};

use super::SeasonError;

/// Seconds in an hour.
const HOUR: i64 = 3_600;
/// Seconds in a day.
const DAY: i64 = 86_400;

/// Over which stretch of the cycle the peak quantile is taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeakScope {
    /// The top share of each shortest reported period: with a daily and a
    /// weekly rhythm, the busiest hours of *each day* are peak (quieter days
    /// still get their own, lower, peak).
    #[default]
    ShortestPeriod,
    /// The top share of the whole longest period: with a daily and a weekly
    /// rhythm, quiet days may have no peak at all.
    LongestPeriod,
}

/// Tunables of [`DefaultSeasonModel`](super::DefaultSeasonModel). All
/// durations are in seconds. Missing fields take their default when
/// deserialised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeasonConfig {
    /// Periods always tested, in seconds (default 12 h, 1 d, 7 d).
    pub candidate_periods: Vec<i64>,
    /// How many more periods the periodogram may propose (default 3).
    pub discover: usize,
    /// Family-wise significance level over all candidates (default 0.01).
    pub significance: f64,
    /// Rotation shuffles per candidate (default 99).
    pub shuffles: usize,
    /// Seed of the shuffles' xorshift generator: fits are reproducible.
    pub seed: u64,
    /// Least share of residual variance, beyond the shuffles' mean, that a
    /// period must explain (default 0.05).
    pub min_strength: f64,
    /// Least number of cycles the data must span to test a period (default 2).
    pub min_cycles: f64,
    /// A period dividing a longer accepted one is kept only if it carries at
    /// least this share of the longer one's shape (default 0.4).
    pub harmonic_share: f64,
    /// Largest analysis grid; finer series are averaged into coarser slots
    /// (default 4096).
    pub max_grid_points: usize,
    /// Quantile of the seasonal shape above which a slot is peak (default
    /// 0.7: the top 30 %).
    pub peak_quantile: f64,
    /// Widest hysteresis band, in quantile units: a peak window is a
    /// stretch at or above the `peak_quantile` quantile that somewhere
    /// reaches the `peak_quantile + band` one, so bumps that barely cross the
    /// threshold make no window (default 0.1). The band is this, half of it
    /// or 0, as chosen by back-testing on the last cycle (this one unless a
    /// narrower band does significantly better there).
    pub hysteresis: f64,
    /// Shortest peak window and shortest off-peak gap between two windows
    /// (default 1 h).
    pub min_peak: i64,
    /// How long before a peak window [`SeasonProfile::season_at`](super::SeasonProfile::season_at)
    /// already answers peak (default 1 h).
    pub lead: i64,
    /// Over which stretch the peak quantile is taken.
    pub peak_scope: PeakScope,
    /// Half-life of the recency weights, in cycles of the longest period.
    /// 0 (the default) chooses it by back-testing: the last cycle is held
    /// out, forecast with half-lives of 0.5, 1, 2, 4 and 16 cycles, and the
    /// one with the least error is used.
    pub half_life_cycles: f64,
    /// The forecast level is the deseasonalised mean over the last
    /// `level_window` seconds. 0 (the default) chooses, by the same
    /// back-test as `half_life_cycles`, between the shortest and the longest
    /// period (7 d for a series without rhythm).
    pub level_window: i64,
}

impl Default for SeasonConfig {
    fn default() -> Self {
        Self {
            candidate_periods: vec![12 * HOUR, DAY, 7 * DAY],
            discover: 3,
            significance: 0.01,
            shuffles: 99,
            seed: 0x5EA5_0A11_D00D_F00D,
            min_strength: 0.05,
            min_cycles: 2.0,
            harmonic_share: 0.4,
            max_grid_points: 4096,
            peak_quantile: 0.7,
            hysteresis: 0.1,
            min_peak: HOUR,
            lead: HOUR,
            peak_scope: PeakScope::ShortestPeriod,
            half_life_cycles: 0.0,
            level_window: 0,
        }
    }
}

/// Most candidate periods accepted in a configuration.
pub(super) const MAX_CANDIDATES: usize = 64;
/// Most shuffles accepted in a configuration.
const MAX_SHUFFLES: usize = 10_000;

impl SeasonConfig {
    /// Checks every field's range; the error names the first bad field.
    pub fn validate(&self) -> Result<(), SeasonError> {
        let bad = |m: String| Err(SeasonError::InvalidConfig(m));
        if self.candidate_periods.len() > MAX_CANDIDATES {
            return bad(format!(
                "candidate_periods: at most {MAX_CANDIDATES} periods"
            ));
        }
        if let Some(p) = self.candidate_periods.iter().find(|p| **p <= 0) {
            return bad(format!(
                "candidate_periods: {p} is not a positive number of seconds"
            ));
        }
        if self.discover > 16 {
            return bad("discover: at most 16".into());
        }
        if !(self.significance > 0.0 && self.significance < 0.5) {
            return bad(format!(
                "significance: {} is not in (0, 0.5)",
                self.significance
            ));
        }
        if self.shuffles < 19 || self.shuffles > MAX_SHUFFLES {
            return bad(format!(
                "shuffles: {} is not in 19..={MAX_SHUFFLES}",
                self.shuffles
            ));
        }
        if !(0.0..1.0).contains(&self.min_strength) {
            return bad(format!(
                "min_strength: {} is not in [0, 1)",
                self.min_strength
            ));
        }
        if !(self.min_cycles >= 1.5 && self.min_cycles <= 1000.0) {
            return bad(format!(
                "min_cycles: {} is not in [1.5, 1000]",
                self.min_cycles
            ));
        }
        if !(0.0..=1.0).contains(&self.harmonic_share) {
            return bad(format!(
                "harmonic_share: {} is not in [0, 1]",
                self.harmonic_share
            ));
        }
        if self.max_grid_points < 64 || self.max_grid_points > 1 << 20 {
            return bad(format!(
                "max_grid_points: {} is not in 64..=1048576",
                self.max_grid_points
            ));
        }
        if !(self.peak_quantile > 0.0 && self.peak_quantile < 1.0) {
            return bad(format!(
                "peak_quantile: {} is not in (0, 1)",
                self.peak_quantile
            ));
        }
        if !(self.hysteresis >= 0.0 && self.peak_quantile + self.hysteresis < 1.0) {
            return bad(format!(
                "hysteresis: {} does not fit around peak_quantile {}",
                self.hysteresis, self.peak_quantile
            ));
        }
        if self.min_peak < 0 || self.lead < 0 || self.level_window < 0 {
            return bad("min_peak, lead and level_window must not be negative".into());
        }
        if !(self.half_life_cycles >= 0.0 && self.half_life_cycles.is_finite()) {
            return bad(format!(
                "half_life_cycles: {} is not a finite number >= 0",
                self.half_life_cycles
            ));
        }
        Ok(())
    }
}
