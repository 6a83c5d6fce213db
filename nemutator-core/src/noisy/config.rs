//! `controller.noisy:` in the configuration file.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::units::HumanDuration;

/// Whether a part of the noisy-neighbour controller acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoisyMode {
    /// Not at all.
    Off,
    /// Decide, and ask the API server for dry-runs only.
    DryRun,
    /// Act.
    On,
}

/// A finite number above 0.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Positive(f64);

/// A number in `(0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Fraction(f64);

impl Positive {
    /// `v` when it is finite and above 0.
    pub fn new(v: f64) -> Option<Self> {
        (v.is_finite() && v > 0.0).then_some(Positive(v))
    }

    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Fraction {
    /// `v` when it is in `(0, 1]`.
    pub fn new(v: f64) -> Option<Self> {
        (v > 0.0 && v <= 1.0).then_some(Fraction(v))
    }

    /// The number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Positive::new(v)
            .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a number above 0")))
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        Fraction::new(v).ok_or_else(|| {
            serde::de::Error::custom(format!("{v} is not a fraction above 0, at most 1"))
        })
    }
}

impl fmt::Display for Positive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `controller.noisy:`: the noisy-neighbour scorer (docs/CONTROLLER.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoisyConfig {
    /// Whether the leader scores pods at all (default: false).
    #[serde(default)]
    pub enabled: bool,
    /// How far back the signals look.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// How often the leader scores.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Noisy when a container uses this many times its CPU request.
    #[serde(default = "default_cpu_over_request")]
    pub cpu_over_request: Positive,
    /// Noisy when a container is throttled in this fraction of its CFS
    /// periods.
    #[serde(default = "default_throttled")]
    pub throttled: Fraction,
    /// Noisy when a container's largest working set reaches this fraction
    /// of its memory limit.
    #[serde(default = "default_memory_near_limit")]
    pub memory_near_limit: Fraction,
    /// Hysteresis: a labelled pod loses the label only once every rule is
    /// known and below this fraction of its threshold.
    #[serde(default = "default_clear_at")]
    pub clear_at: Fraction,
    /// Whether the label is written (`dry-run`: asked of the API server as
    /// dry-run patches).
    #[serde(default = "default_label")]
    pub label: NoisyMode,
    /// Whether noisy pods sharing a node with a precious pod are evicted
    /// (through the evictor and its rules).
    #[serde(default = "default_evict")]
    pub evict: NoisyMode,
}

fn default_window() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_cpu_over_request() -> Positive {
    Positive(2.0)
}
fn default_throttled() -> Fraction {
    Fraction(0.25)
}
fn default_memory_near_limit() -> Fraction {
    Fraction(0.9)
}
fn default_clear_at() -> Fraction {
    Fraction(0.8)
}
fn default_label() -> NoisyMode {
    NoisyMode::On
}
fn default_evict() -> NoisyMode {
    NoisyMode::DryRun
}

impl Default for NoisyConfig {
    fn default() -> Self {
        NoisyConfig {
            enabled: false,
            window: default_window(),
            interval: default_interval(),
            cpu_over_request: default_cpu_over_request(),
            throttled: default_throttled(),
            memory_near_limit: default_memory_near_limit(),
            clear_at: default_clear_at(),
            label: default_label(),
            evict: default_evict(),
        }
    }
}
