//! Seasons end to end on the file source: learn the rhythm of a workload,
//! compute a recommendation per season from that season's history, and apply
//! the active season's brainset at admission.

use std::sync::Arc;
use std::time::Duration;

use nemutator_core::admission::Admission;
use nemutator_core::metrics::MetricsSource;
use nemutator_core::mutate::{Pipeline, ResourcesLayer};
use nemutator_core::policy::PolicySet;
use nemutator_core::recommend::{RecommendationStore, Recommender, Seasons};
use nemutator_core::season::{DefaultSeasonModel, Season, SeasonStore};
use nemutator_metrics::FileSource;
use serde_json::json;

/// 2025-12-01 00:00 UTC, a Monday.
const END: i64 = 1_764_547_200;
const DAY: i64 = 86_400;

/// `days` of 5-minute samples for two pods of Deployment `web`; CPU is busy
/// (2 cores) from 09:00 to 17:00 UTC and quiet (0.2) otherwise when `rhythm`,
/// else a noisy constant.
fn mk_history(days: i64, rhythm: bool) -> String {
    let mut cpu = String::from("# TYPE container_cpu_usage_seconds counter\n");
    let mut mem = String::from("# TYPE container_memory_working_set_bytes gauge\n");
    for pod in ["web-7d9f8b6c5d-x2k9p", "web-7d9f8b6c5d-b7k2x"] {
        let labels = format!("{{namespace=\"shop\",pod=\"{pod}\",container=\"app\"}}");
        let mut total = 0.0;
        let mut seed: u64 = 7;
        for i in 0..days * 288 {
            let t = END - days * DAY + i * 300;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 1000) as f64 / 1000.0;
            let hour = (t % DAY) / 3600;
            let base = if !rhythm {
                0.8 + 0.4 * noise
            } else if (9..17).contains(&hour) {
                2.0
            } else {
                0.2
            };
            total += base * (0.95 + 0.1 * noise) * 300.0;
            cpu += &format!("container_cpu_usage_seconds_total{labels} {total:.3} {t}\n");
            mem += &format!(
                "container_memory_working_set_bytes{labels} {} {t}\n",
                300_000_000 + (noise * 1e6) as u64
            );
        }
    }
    cpu + &mem + "# EOF\n"
}

fn mk_policy() -> PolicySet {
    let yaml = r#"
- name: seasonal
  window: 7d
  min_history: 1d
  cpu: { percentile: 95, headroom: 10% }
  brainsets:
    peak: { cpu: { percentile: 99, headroom: 30% } }
    off-peak: { cpu: { percentile: 90, headroom: 5% } }
"#;
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn mk_seasons() -> Seasons {
    Seasons {
        model: Arc::new(DefaultSeasonModel::default()),
        store: Arc::new(SeasonStore::new()),
        history: Duration::from_secs(28 * DAY as u64),
        step: Duration::from_secs(300),
        refit: Duration::from_secs(3600),
        lead: Duration::from_secs(3600),
    }
}

fn mk_review() -> serde_json::Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop", "operation": "CREATE",
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "web-7d9f8b6c5d-",
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d", "uid": "u", "controller": true}]},
                "spec": {"containers": [{"name": "app", "image": "web", "resources": {"requests": {"cpu": "4", "memory": "1Gi"}}}]}}
        }
    })
}

fn at_noon() -> i64 {
    END + 30 * DAY + 12 * 3600
}

/// 08:30: half an hour before the 09:00 peak, inside the 1 h lead time.
fn at_lead() -> i64 {
    END + 30 * DAY + 8 * 3600 + 1800
}

fn at_night() -> i64 {
    END + 30 * DAY + 2 * 3600
}

#[tokio::test]
async fn each_season_is_sized_from_its_own_history() {
    let source: Arc<dyn MetricsSource> =
        Arc::new(FileSource::from_text(&mk_history(21, true)).unwrap_or_else(|e| panic!("{e}")));
    let seasons = mk_seasons();
    let policies = Arc::new(mk_policy());
    let recs = Recommender::new(source, policies.clone())
        .with_seasons(Some(seasons.clone()))
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let learned = seasons
        .store
        .get(&recs[0].target.workload)
        .unwrap_or_else(|| panic!("no profile"));
    assert!(
        learned.profile.periods().contains(&DAY),
        "{:?}",
        learned.profile.periods()
    );
    assert!(
        seasons.store.cluster().is_some(),
        "cluster-wide profile learned too"
    );

    let find = |s| {
        recs.iter()
            .find(|r| r.season == Some(s))
            .and_then(|r| r.cpu.as_ref())
            .map(|c| c.request.millis())
    };
    let (p, o) = (
        find(Season::Peak).unwrap_or_default(),
        find(Season::OffPeak).unwrap_or_default(),
    );
    // Peak: p99 of ~2 cores + 30%; off-peak: p90 of ~0.2 cores + 5%.
    assert!((2400..=3000).contains(&p), "peak {p}m");
    assert!((150..=300).contains(&o), "off-peak {o}m");

    // Admission picks the brainset of the season the workload is in now.
    let store = Arc::new(RecommendationStore::new());
    store.replace(recs);
    let pipeline = Pipeline::builder()
        .layer(ResourcesLayer::new(store, policies).with_seasons(seasons.store.clone()))
        .build();
    let body = serde_json::to_vec(&mk_review()).unwrap_or_default();
    type Case = (fn() -> i64, &'static str, std::ops::RangeInclusive<i64>);
    let cases: [Case; 3] = [
        (at_noon, "peak", 2400..=3000),
        (at_lead, "peak", 2400..=3000),
        (at_night, "off-peak", 150..=300),
    ];
    for (clock, season, range) in cases {
        let admission = Admission::new(pipeline.clone()).with_clock(clock);
        let reviewed = admission
            .review(&body)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pod = nemutator_core::admission::patched_object(&body, reviewed.patch.as_ref())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            pod["metadata"]["annotations"]["nemutator.io/season"],
            season
        );
        let applied = pod["metadata"]["annotations"]["nemutator.io/resources-applied"]
            .as_str()
            .unwrap_or_default();
        assert!(applied.ends_with(&format!(", {season})")), "{applied}");
        let cpu = pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]
            .as_str()
            .unwrap_or_default();
        let m = nemutator_core::quantity::Quantity::parse(cpu)
            .unwrap_or_default()
            .millis();
        assert!(range.contains(&m), "{season}: {cpu}");
    }
}

#[tokio::test]
async fn no_rhythm_means_one_season() {
    let source: Arc<dyn MetricsSource> =
        Arc::new(FileSource::from_text(&mk_history(21, false)).unwrap_or_else(|e| panic!("{e}")));
    let seasons = mk_seasons();
    let recs = Recommender::new(source, Arc::new(mk_policy()))
        .with_seasons(Some(seasons.clone()))
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0].season, None);
    let learned = seasons
        .store
        .get(&recs[0].target.workload)
        .unwrap_or_else(|| panic!("no profile"));
    assert!(learned.profile.periods().is_empty());
}

#[tokio::test]
async fn young_profiles_are_kept_and_old_ones_refitted() {
    let source: Arc<dyn MetricsSource> =
        Arc::new(FileSource::from_text(&mk_history(21, true)).unwrap_or_else(|e| panic!("{e}")));
    let seasons = mk_seasons();
    let policies = Arc::new(mk_policy());
    let recommender = Recommender::new(source, policies).with_seasons(Some(seasons.clone()));
    let recs = recommender
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let workload = recs[0].target.workload.clone();
    let fitted = seasons
        .store
        .get(&workload)
        .unwrap_or_else(|| panic!("no profile"));

    // Pretend it was fitted 10 s ago: younger than `refit` (1 h), so kept as is.
    let mut young = (*fitted).clone();
    young.fitted_at -= 10;
    seasons
        .store
        .replace([(workload.clone(), young.clone())].into());
    recommender
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        seasons.store.get(&workload).map(|f| f.fitted_at),
        Some(young.fitted_at)
    );

    // Two hours ago: older than `refit`, so fitted again now.
    let mut old = (*fitted).clone();
    old.fitted_at -= 7200;
    seasons
        .store
        .replace([(workload.clone(), old.clone())].into());
    recommender
        .recommend_all(None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refitted = seasons
        .store
        .get(&workload)
        .map(|f| f.fitted_at)
        .unwrap_or_default();
    assert!(
        refitted > old.fitted_at + 3600,
        "{refitted} vs {}",
        old.fitted_at
    );
}
