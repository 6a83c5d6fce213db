//! The overprovisioning placeholder against the real API server
//! (scripts/apiserver.sh): `nemutator install`'s PriorityClass is accepted
//! at -10, and [`Overprovisioner::pass`] creates the placeholder Deployment
//! with the peak's replicas inside the lead time before a peak and shrinks
//! it off-peak, by server-side apply. No controller-manager runs there, so
//! no pods appear: the test reads the Deployment's spec.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::PostParams;
use kube::Api;
use nemutator_core::controller::overprov::{
    Overprovisioner, OverprovisioningConfig, DEPLOYMENT_NAME, PRIORITY, PRIORITY_CLASS,
};
use nemutator_core::install::{self, InstallOptions, Tls};
use nemutator_core::quantity::Quantity;
use nemutator_core::season::{FittedProfile, Season, SeasonProfile, SeasonStore};
use nemutator_testkit::cluster::TestCluster;
use serde_json::json;

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// 2026-12-07 00:00 UTC.
const MIDNIGHT: i64 = 1_796_601_600;

/// A daily profile peaking 09:00–17:00 UTC, one hour of lead.
fn daily() -> SeasonProfile {
    let mut v =
        serde_json::to_value(SeasonProfile::flat(1.0, HOUR)).unwrap_or_else(|e| panic!("{e}"));
    v["cycle"] = DAY.into();
    v["periods"] = json!([DAY]);
    v["peak_windows"] = json!([{"period": DAY, "start": 9 * HOUR, "end": 17 * HOUR}]);
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn replicas(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.replicas)
}

#[tokio::test]
async fn the_placeholder_grows_ahead_of_the_peak_and_shrinks_after_it() {
    let test = "the_placeholder_grows_ahead_of_the_peak_and_shrinks_after_it";
    let Some(cluster) = TestCluster::from_env(test).await else {
        return;
    };
    let client = cluster.client.clone();
    let ns = format!("overprov-{}", std::process::id());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The PriorityClass as `nemutator install` writes it, under a name of
    // this run (cluster-wide: a Helm install in another test must not find
    // one it did not make), deleted at the end.
    let options = InstallOptions::new(&ns).unwrap_or_else(|e| panic!("{e}"));
    let mut class = install::manifests(&options, &Tls::CertManager).overprovisioning_priority_class;
    assert_eq!(class.metadata.name.as_deref(), Some(PRIORITY_CLASS));
    let class_name = format!("{PRIORITY_CLASS}-{ns}");
    class.metadata.name = Some(class_name.clone());
    let classes = Api::<PriorityClass>::all(client.clone());
    let stored = classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = classes.delete(&class_name, &Default::default()).await;
    assert_eq!(stored.value, PRIORITY);
    assert_ne!(stored.global_default, Some(true));

    let seasons = Arc::new(SeasonStore::new());
    seasons.set_cluster(Some(FittedProfile {
        profile: daily(),
        fitted_at: MIDNIGHT,
    }));
    let config = OverprovisioningConfig {
        enabled: true,
        replicas_peak: 5,
        replicas_off_peak: 1,
        cpu: Quantity::from_millis(250),
        ..OverprovisioningConfig::default()
    };
    let over = Overprovisioner::new(client.clone(), &ns, config, Some(seasons));
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    // 06:00: off-peak, created with one pod.
    let p = over
        .pass(MIDNIGHT + 6 * HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.season, Season::OffPeak);
    let d = deployments
        .get(DEPLOYMENT_NAME)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(&d), Some(1));
    let pod = d.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    assert_eq!(
        pod.and_then(|p| p.priority_class_name.as_deref()),
        Some(PRIORITY_CLASS)
    );
    let requests = pod
        .and_then(|p| p.containers.first())
        .and_then(|c| c.resources.as_ref())
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("250m"));
    let managers: Vec<_> = d
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(managers, [nemutator_core::controller::FIELD_MANAGER]);

    // 08:30: within the lead before the 09:00 peak, grown.
    over.pass(MIDNIGHT + 8 * HOUR + 30 * 60)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let d = deployments
        .get(DEPLOYMENT_NAME)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(&d), Some(5));
    let mut text = String::new();
    over.metrics().render(&mut text);
    assert!(
        text.contains("\nnemutator_overprovisioning_replicas 5\n"),
        "{text}"
    );
    let season = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("nemutator.io/season"));
    assert_eq!(season.map(String::as_str), Some("peak"));

    // 18:00: after the peak, shrunk again.
    over.pass(MIDNIGHT + 18 * HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let d = deployments
        .get(DEPLOYMENT_NAME)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replicas(&d), Some(1));
}
