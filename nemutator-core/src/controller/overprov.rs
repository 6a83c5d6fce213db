//! Overprovisioning: a placeholder Deployment of pause pods at a negative
//! priority ([`PRIORITY_CLASS`], value [`PRIORITY`], the cluster-autoscaler
//! FAQ's pattern). They hold room on the nodes; a real pod that needs it
//! preempts them, and the pending placeholders make the cluster autoscaler
//! add a node before real pods have to wait for one.
//!
//! The leader sizes it from the cluster-wide season profile: the peak
//! replicas from the season's lead time before a peak window until it ends,
//! the off-peak replicas otherwise (and without a cluster profile).
//! [`desired`] decides, [`deployment`] builds the object, and
//! [`Overprovisioner`] applies it with server-side apply.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSpec, PodTemplateSpec, ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::leader::Leadership;
use super::FIELD_MANAGER;
use crate::annotations;
use crate::error::Chain;
use crate::quantity::Quantity;
use crate::season::{Season, SeasonProfile, SeasonStore};

/// The PriorityClass of the placeholder pods (`nemutator install` creates it).
pub const PRIORITY_CLASS: &str = "nemutator-overprovisioning";
/// Its value: below every workload's default of 0, as in the cluster-autoscaler FAQ.
pub const PRIORITY: i32 = -10;
/// The placeholder Deployment, in the controller's namespace.
pub const DEPLOYMENT_NAME: &str = "nemutator-overprovisioning";
/// The default image of the placeholder container.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// `controller.overprovisioning:` in the configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverprovisioningConfig {
    /// Whether the leader keeps the placeholder Deployment (default: false).
    #[serde(default)]
    pub enabled: bool,
    /// Placeholder pods from the lead time before a peak until its end.
    #[serde(default = "default_peak")]
    pub replicas_peak: u16,
    /// Placeholder pods otherwise.
    #[serde(default = "default_off_peak")]
    pub replicas_off_peak: u16,
    /// CPU request of one placeholder pod.
    #[serde(default = "default_cpu")]
    pub cpu: Quantity,
    /// Memory request of one placeholder pod.
    #[serde(default = "default_memory")]
    pub memory: Quantity,
    /// The placeholder container's image.
    #[serde(default = "default_image")]
    pub image: String,
}

fn default_peak() -> u16 {
    3
}
fn default_off_peak() -> u16 {
    1
}
fn default_cpu() -> Quantity {
    Quantity::from_millis(500)
}
fn default_memory() -> Quantity {
    Quantity::from_units(512 << 20)
}
fn default_image() -> String {
    PAUSE_IMAGE.to_owned()
}

impl Default for OverprovisioningConfig {
    fn default() -> Self {
        OverprovisioningConfig {
            enabled: false,
            replicas_peak: default_peak(),
            replicas_off_peak: default_off_peak(),
            cpu: default_cpu(),
            memory: default_memory(),
            image: default_image(),
        }
    }
}

/// What the placeholder Deployment should be now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// The cluster's season (lead time applied).
    pub season: Season,
    /// Pods.
    pub replicas: i32,
    /// CPU request of each.
    pub cpu: Quantity,
    /// Memory request of each.
    pub memory: Quantity,
}

/// The placeholder for the cluster profile `cluster` at `now` (unix seconds):
/// peak replicas within a peak window or its lead time before it, off-peak
/// replicas otherwise and when the cluster has no profile.
pub fn desired(
    config: &OverprovisioningConfig,
    cluster: Option<&SeasonProfile>,
    now: i64,
) -> Placeholder {
    let season = cluster.map_or(Season::OffPeak, |p| p.season_at(now));
    let replicas = match season {
        Season::Peak => config.replicas_peak,
        Season::OffPeak => config.replicas_off_peak,
    };
    Placeholder {
        season,
        replicas: i32::from(replicas),
        cpu: config.cpu,
        memory: config.memory,
    }
}

fn labels(all: bool) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "nemutator".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "overprovisioning".to_owned(),
        ),
    ]);
    if all {
        labels.insert(
            "app.kubernetes.io/part-of".to_owned(),
            "nemutator".to_owned(),
        );
    }
    labels
}

/// The placeholder Deployment in `namespace`: pause containers requesting
/// the placeholder's resources at [`PRIORITY_CLASS`], left alone by the
/// webhook (`nemutator.io/resources: off`), the season it was sized for in
/// `nemutator.io/season`.
pub fn deployment(namespace: &str, image: &str, p: &Placeholder) -> Deployment {
    let requests = BTreeMap::from([
        ("cpu".to_owned(), K8sQuantity(p.cpu.to_cpu_string())),
        (
            "memory".to_owned(),
            K8sQuantity(p.memory.to_memory_string()),
        ),
    ]);
    let container = Container {
        name: "pause".to_owned(),
        image: Some(image.to_owned()),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(65_535),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(DEPLOYMENT_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(true)),
            annotations: Some(BTreeMap::from([(
                annotations::SEASON.to_owned(),
                p.season.as_str().to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(p.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(false)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(true)),
                    annotations: Some(BTreeMap::from([(
                        annotations::RESOURCES.to_owned(),
                        "off".to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    priority_class_name: Some(PRIORITY_CLASS.to_owned()),
                    termination_grace_period_seconds: Some(0),
                    automount_service_account_token: Some(false),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// `nemutator_overprovisioning_replicas` (the last size this replica
/// applied, -1 before any) and `nemutator_overprovisioning_apply_errors_total`.
#[derive(Debug)]
pub struct OverprovisioningMetrics {
    replicas: AtomicI64,
    errors: AtomicU64,
}

impl Default for OverprovisioningMetrics {
    fn default() -> Self {
        OverprovisioningMetrics {
            replicas: AtomicI64::new(-1),
            errors: AtomicU64::new(0),
        }
    }
}

impl OverprovisioningMetrics {
    /// Appends the exposition text to `out`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP nemutator_overprovisioning_replicas Placeholder pods last applied by this replica (-1: none).\n");
        out.push_str("# TYPE nemutator_overprovisioning_replicas gauge\n");
        let _ = writeln!(
            out,
            "nemutator_overprovisioning_replicas {}",
            self.replicas.load(Ordering::Relaxed)
        );
        out.push_str("# HELP nemutator_overprovisioning_apply_errors_total Failed applies of the placeholder Deployment.\n");
        out.push_str("# TYPE nemutator_overprovisioning_apply_errors_total counter\n");
        let _ = writeln!(
            out,
            "nemutator_overprovisioning_apply_errors_total {}",
            self.errors.load(Ordering::Relaxed)
        );
    }
}

/// The leader's loop that keeps the placeholder Deployment sized.
#[derive(Clone)]
pub struct Overprovisioner {
    client: Client,
    namespace: String,
    config: OverprovisioningConfig,
    seasons: Option<Arc<SeasonStore>>,
    metrics: Arc<OverprovisioningMetrics>,
}

impl std::fmt::Debug for Overprovisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overprovisioner")
            .field("namespace", &self.namespace)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Overprovisioner {
    /// Keeps the Deployment in `namespace` as `config` says, from the
    /// cluster profile of `seasons`.
    pub fn new(
        client: Client,
        namespace: &str,
        config: OverprovisioningConfig,
        seasons: Option<Arc<SeasonStore>>,
    ) -> Self {
        Overprovisioner {
            client,
            namespace: namespace.to_owned(),
            config,
            seasons,
            metrics: Arc::new(OverprovisioningMetrics::default()),
        }
    }

    /// The counters (for `/metrics`).
    pub fn metrics(&self) -> Arc<OverprovisioningMetrics> {
        self.metrics.clone()
    }

    /// Applies the placeholder for `now` (unix seconds): one server-side
    /// apply `PATCH` of the Deployment, which creates or resizes it.
    pub async fn pass(&self, now: i64) -> Result<Placeholder, kube::Error> {
        let cluster = self.seasons.as_ref().and_then(|s| s.cluster());
        let placeholder = desired(&self.config, cluster.as_ref().map(|c| &c.profile), now);
        let object = deployment(&self.namespace, &self.config.image, &placeholder);
        let applied = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .patch(
                DEPLOYMENT_NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await;
        match applied {
            Ok(_) => {
                self.metrics
                    .replicas
                    .store(i64::from(placeholder.replicas), Ordering::Relaxed);
                Ok(placeholder)
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Runs a pass every `interval` while `leadership` says this replica
    /// leads, until the election ends; nothing when disabled.
    pub async fn run(self, mut leadership: Leadership, interval: Duration) {
        if !self.config.enabled {
            return;
        }
        let mut last = None;
        loop {
            if leadership.is_leader() {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                match self.pass(now).await {
                    Ok(p) => {
                        if last.as_ref() != Some(&p) {
                            tracing::info!(season = %p.season, replicas = p.replicas, "overprovisioning: placeholder applied");
                        }
                        last = Some(p);
                    }
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "overprovisioning: apply failed");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                changed = leadership.changed() => if changed.is_none() { return },
            }
        }
    }
}

#[cfg(test)]
#[path = "overprov_tests.rs"]
mod tests;
