//! Seasons: learn by itself when a workload is in its peak season and when it
//! is off-peak, forecast the load, and split usage history by season so that
//! each brainset is computed from its own season's history.
//!
//! # Series
//!
//! A series is a slice of `(timestamp, value)` pairs, timestamps in unix
//! seconds. Any order is accepted; duplicate timestamps are averaged;
//! non-finite values are dropped; gaps are allowed.
//!
//! # The default model, step by step
//!
//! 1. **Grid.** The series is resampled onto a regular grid whose step is the
//!    median sampling interval, coarsened so that the grid holds at most
//!    [`SeasonConfig::max_grid_points`] points (8 weeks of 5-minute samples
//!    become 20-minute slots). Empty slots are linearly interpolated for
//!    detrending and *skipped* by every statistic. Values are divided by their
//!    largest magnitude so that huge inputs cannot overflow.
//! 2. **Outliers.** A Hampel filter (median of 7 neighbours, 5 robust standard
//!    deviations) replaces isolated spikes of up to three slots.
//! 3. **Candidates.** The configured periods (12 h, 1 d, 7 d by default) plus
//!    up to [`SeasonConfig::discover`] periods found as peaks of the
//!    periodogram (a radix-2 FFT with zero padding), each of which must stand
//!    out of its local spectrum by a Fisher-style threshold. A candidate is only
//!    tested when the data spans [`SeasonConfig::min_cycles`] of it.
//! 4. **Significance.** Candidates are tested from the shortest up, each on the
//!    residual left by the periods already accepted, after removing a centred
//!    moving average one period long (so trends and level shifts do not look
//!    periodic). The statistic is the share of variance explained by the
//!    phase-folded mean profile. Its null distribution comes from shuffles that
//!    rotate every cycle by its own random phase (a fixed-seed xorshift): this
//!    keeps the autocorrelation inside a cycle, so a random walk is not
//!    mistaken for a rhythm the way point shuffles would. A period is accepted
//!    when the observed statistic beats every shuffle at the configured level,
//!    stands `z` standard deviations above the shuffles' mean (Bonferroni over
//!    all candidates), explains at least [`SeasonConfig::min_strength`] more
//!    variance than chance, and is confirmed by a local maximum of the
//!    autocorrelation at that lag.
//! 5. **Harmonics.** A period that divides a longer accepted one and carries
//!    less than [`SeasonConfig::harmonic_share`] of its shape is folded into it
//!    (a daily load's 12 h harmonic is not reported as a 12 h rhythm).
//! 6. **Profile.** The accepted periods are refitted together by backfitting
//!    (trend = moving average over the longest period) with recency weights;
//!    the level is the deseasonalised mean of the latest window. The recency
//!    half-life and the level window are chosen by back-testing on the last
//!    cycle of the history, unless configured. The forecast is level + the sum
//!    of the periodic profiles.
//! 7. **Peak windows.** On the longest period, a peak window is a stretch
//!    where the seasonal shape is among the top `1 - `[`SeasonConfig::peak_quantile`]
//!    share of its bins (taken per shortest period by default, i.e. per day,
//!    so the top 30 % of each day, counted in whole bins) and that somewhere
//!    reaches the top share narrowed by a hysteresis band (a double
//!    threshold: bumps that barely cross the threshold make no window).
//!    Gaps and windows shorter than [`SeasonConfig::min_peak`] are removed,
//!    so the season does not flap. The band (the configured
//!    [`SeasonConfig::hysteresis`], half of it or none), a centred smoothing
//!    of the shape (over `min_peak` or none) and the shortest gap kept (one
//!    or two `min_peak`) are chosen by the same back-test as the weighting:
//!    windows built from the fit without the last cycle are scored (F1)
//!    against that cycle's own top slots per day. A rule replaces the
//!    default (full band, smoothing, one `min_peak`) only when it is right
//!    on significantly more of the disputed slots (exact sign test, 5 %),
//!    so noisy series keep the steadiest windows.
//!    [`SeasonProfile::season_at`] turns to peak [`SeasonConfig::lead`] seconds
//!    before a window starts.
//!
//! Phases are counted from Monday 1970-01-05 00:00 UTC, so a weekly window's
//! `start` is seconds since Monday 00:00 UTC and a daily one's since midnight UTC.
//!
//! `docs/SEASONS.md` evaluates the model on real and synthetic series.

mod backfit;
mod config;
mod detect;
mod dsp;
mod heatmap;
mod io;
mod peaks;
mod prep;
mod profile;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use config::{PeakScope, SeasonConfig};
pub use heatmap::{heatmap_html, heatmap_svg};
pub use io::{parse_series_csv, predictions_csv, season_report_json};
pub use profile::{
    Component, PeakWindow, PeriodTest, Prediction, SeasonProfile, TestOutcome, MAX_PREDICTIONS,
};
pub use store::{FittedProfile, SeasonSnapshot, SeasonStore, SeasonStoreError};

/// One usage sample: `(unix seconds, value)`. Every API of this module takes
/// series as slices of these tuples.
pub type Sample = (i64, f64);

/// Peak or off-peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Season {
    /// Inside (or within the lead time before) a peak window.
    Peak,
    /// Everything else, and always when the series has no rhythm.
    OffPeak,
}

impl Season {
    /// `"peak"` or `"off-peak"`, as in JSON, CSV and the `nemutator.io/season` annotation.
    pub fn as_str(&self) -> &'static str {
        match self {
            Season::Peak => "peak",
            Season::OffPeak => "off-peak",
        }
    }
}

impl fmt::Display for Season {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Season {
    type Err = SeasonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "peak" => Ok(Season::Peak),
            "off-peak" => Ok(Season::OffPeak),
            other => Err(SeasonError::InvalidInput(format!(
                "unknown season {other:?} (expected \"peak\" or \"off-peak\")"
            ))),
        }
    }
}

/// What can go wrong when fitting or reading a series.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SeasonError {
    /// The series has no sample with a finite value.
    EmptySeries,
    /// A [`SeasonConfig`] field is out of range; the message names it.
    InvalidConfig(String),
    /// Other malformed input (e.g. an unknown season name).
    InvalidInput(String),
    /// A CSV line could not be read. `line` is 1-based and counts the header.
    Csv {
        /// 1-based line number in the input.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
}

impl fmt::Display for SeasonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeasonError::EmptySeries => f.write_str("the series has no finite sample"),
            SeasonError::InvalidConfig(m) => write!(f, "invalid season config: {m}"),
            SeasonError::InvalidInput(m) => f.write_str(m),
            SeasonError::Csv { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for SeasonError {}

/// Learns a [`SeasonProfile`] from a usage series.
pub trait SeasonModel: Send + Sync + fmt::Debug {
    /// Fit to a series (any order, gaps allowed). Returns the learned profile.
    ///
    /// A series with at least one finite sample always yields a profile; one
    /// without rhythm yields no period, no peak window and a flat forecast.
    fn fit(&self, series: &[Sample]) -> Result<SeasonProfile, SeasonError>;
}

/// The default model: periodogram discovery, rotation-permutation
/// significance test, autocorrelation confirmation, backfitted additive
/// profile and hysteresis peak windows (see the [module docs](self)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DefaultSeasonModel {
    /// Tunables; [`SeasonConfig::default`] suits 1-minute to 1-hour samples.
    pub config: SeasonConfig,
}

impl DefaultSeasonModel {
    /// A model with the given configuration.
    pub fn new(config: SeasonConfig) -> Self {
        Self { config }
    }
}

impl SeasonModel for DefaultSeasonModel {
    fn fit(&self, series: &[Sample]) -> Result<SeasonProfile, SeasonError> {
        detect::fit(&self.config, series)
    }
}
