//! Learned season profiles per workload (and for the cluster as a whole),
//! read lock-free at admission and saved to a state file so they survive
//! restarts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use super::{Season, SeasonProfile};
use crate::mutate::SeasonOracle;
use crate::workload::WorkloadKey;

/// A fitted profile and when it was fitted (unix seconds, wall clock).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FittedProfile {
    /// The profile.
    pub profile: SeasonProfile,
    /// When it was fitted.
    pub fitted_at: i64,
}

/// Every profile of a [`SeasonStore`]: what the state file holds, and what
/// the shared store publishes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeasonSnapshot {
    /// Workload profiles.
    #[serde(default)]
    pub workloads: Vec<(WorkloadKey, FittedProfile)>,
    /// The cluster-wide profile.
    #[serde(default)]
    pub cluster: Option<FittedProfile>,
}

/// Season profiles by workload. Admission asks it which season a workload is
/// in ([`SeasonOracle`]); a workload without a profile of its own follows the
/// cluster-wide profile.
#[derive(Debug, Default)]
pub struct SeasonStore {
    workloads: ArcSwap<HashMap<WorkloadKey, Arc<FittedProfile>>>,
    cluster: ArcSwap<Option<Arc<FittedProfile>>>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SeasonStoreError {
    /// I/O on the state file.
    #[error("season state {path}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid.
    #[error("season state {path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// One-line reason.
        message: String,
    },
}

impl SeasonStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The profile of a workload.
    pub fn get(&self, workload: &WorkloadKey) -> Option<Arc<FittedProfile>> {
        self.workloads.load().get(workload).cloned()
    }

    /// The cluster-wide profile.
    pub fn cluster(&self) -> Option<Arc<FittedProfile>> {
        self.cluster.load().as_ref().clone()
    }

    /// Replace every workload profile.
    pub fn replace(&self, profiles: HashMap<WorkloadKey, FittedProfile>) {
        let map = profiles
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        self.workloads.store(Arc::new(map));
    }

    /// Set the cluster-wide profile.
    pub fn set_cluster(&self, profile: Option<FittedProfile>) {
        self.cluster.store(Arc::new(profile.map(Arc::new)));
    }

    /// Every workload profile.
    pub fn snapshot(&self) -> Vec<(WorkloadKey, Arc<FittedProfile>)> {
        self.workloads
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Number of workload profiles.
    pub fn len(&self) -> usize {
        self.workloads.load().len()
    }

    /// No workload profile at all?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every profile (the cluster's too), sorted by workload: what the
    /// state file and the shared store hold.
    pub fn state(&self) -> SeasonSnapshot {
        let mut workloads: Vec<_> = self
            .workloads
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), (**v).clone()))
            .collect();
        workloads.sort_by(|a, b| a.0.cmp(&b.0));
        SeasonSnapshot {
            workloads,
            cluster: self.cluster().map(|c| (*c).clone()),
        }
    }

    /// Replace every profile with those of `snapshot`.
    pub fn restore(&self, snapshot: SeasonSnapshot) {
        let SeasonSnapshot { workloads, cluster } = snapshot;
        self.replace(workloads.into_iter().collect());
        self.set_cluster(cluster);
    }

    /// Write the state to `path` (atomically: a temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), SeasonStoreError> {
        let snapshot = self.state();
        let name = path.display().to_string();
        let text = serde_json::to_vec(&snapshot).map_err(|e| SeasonStoreError::Format {
            path: name.clone(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("tmp");
        let io = |source| SeasonStoreError::Io {
            path: name.clone(),
            source,
        };
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Read the state from `path`; a missing file is an empty store.
    pub fn load(&self, path: &Path) -> Result<(), SeasonStoreError> {
        let name = path.display().to_string();
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(SeasonStoreError::Io { path: name, source }),
        };
        let snapshot: SeasonSnapshot =
            serde_json::from_slice(&text).map_err(|e| SeasonStoreError::Format {
                path: name,
                message: e.to_string(),
            })?;
        self.restore(snapshot);
        Ok(())
    }
}

impl SeasonOracle for SeasonStore {
    fn season(&self, workload: &WorkloadKey, now: i64) -> Option<Season> {
        let fitted = self.get(workload).or_else(|| self.cluster())?;
        if fitted.profile.periods().is_empty() {
            return None;
        }
        Some(fitted.profile.season_at(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::season::{DefaultSeasonModel, SeasonModel};
    use crate::workload::WorkloadKind;

    fn mk_daily(days: i64) -> Vec<(i64, f64)> {
        (0..days * 288)
            .map(|i| {
                let t = 1_700_006_400 + i * 300; // a Monday 00:00 UTC... close enough
                let hour = (t % 86_400) as f64 / 3600.0;
                let v = if (9.0..17.0).contains(&hour) {
                    10.0
                } else {
                    2.0
                };
                (t, v + ((i * 7919) % 13) as f64 * 0.05)
            })
            .collect()
    }

    #[test]
    fn oracle_follows_the_profile_and_falls_back_to_the_cluster() {
        let profile = DefaultSeasonModel::default()
            .fit(&mk_daily(21))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!profile.periods().is_empty());
        let store = SeasonStore::new();
        let w = WorkloadKey::new("ns", WorkloadKind::Deployment, "web");
        assert_eq!(store.season(&w, 0), None);
        store.set_cluster(Some(FittedProfile {
            profile: profile.clone(),
            fitted_at: 0,
        }));
        let noon = 1_702_000_000 - 1_702_000_000 % 86_400 + 12 * 3600;
        let night = noon + 12 * 3600;
        assert_eq!(store.season(&w, noon), Some(Season::Peak));
        assert_eq!(store.season(&w, night), Some(Season::OffPeak));
        // A workload without rhythm has one season: none.
        let flat = SeasonProfile::flat(1.0, 3600);
        store.replace(
            [(
                w.clone(),
                FittedProfile {
                    profile: flat,
                    fitted_at: 0,
                },
            )]
            .into(),
        );
        assert_eq!(store.season(&w, noon), None);
    }

    #[test]
    fn state_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("nemutator-season-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("seasons.json");
        let profile = DefaultSeasonModel::default()
            .fit(&mk_daily(21))
            .unwrap_or_else(|e| panic!("{e}"));
        let w = WorkloadKey::new("ns", WorkloadKind::Deployment, "web");
        let a = SeasonStore::new();
        a.replace(
            [(
                w.clone(),
                FittedProfile {
                    profile: profile.clone(),
                    fitted_at: 42,
                },
            )]
            .into(),
        );
        a.save(&path).unwrap_or_else(|e| panic!("{e}"));
        let b = SeasonStore::new();
        b.load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.get(&w).map(|f| f.fitted_at), Some(42));
        // JSON keeps floats to within an ulp: compare what the profile decides.
        let restored = b
            .get(&w)
            .map(|f| f.profile.clone())
            .unwrap_or_else(|| panic!("lost"));
        assert_eq!(restored.periods(), profile.periods());
        assert_eq!(restored.peak_windows(), profile.peak_windows());
        for t in (1_702_000_000..1_702_000_000 + 86_400).step_by(900) {
            assert_eq!(restored.season_at(t), profile.season_at(t));
            assert!((restored.forecast(t) - profile.forecast(t)).abs() < 1e-9);
        }
        std::fs::write(&path, "{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(b.load(&path).is_err());
        assert_eq!(b.len(), 1, "a bad file changes nothing");
    }

    #[test]
    fn the_peak_mask_is_the_peak_windows() {
        let profile = DefaultSeasonModel::default()
            .fit(&mk_daily(21))
            .unwrap_or_else(|e| panic!("{e}"));
        let mask = profile.peak_mask().unwrap_or_else(|| panic!("no mask"));
        let off = mask.complement();
        let from = 1_702_000_000 - 1_702_000_000 % 86_400;
        for t in (from..from + 2 * 86_400).step_by(300) {
            assert_eq!(mask.contains(t), profile.is_peak(t), "{t}");
            assert_ne!(mask.contains(t), off.contains(t));
        }
        assert_eq!(SeasonProfile::flat(1.0, 0).peak_mask(), None);
    }
}
