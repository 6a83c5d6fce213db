//! The drift reconciler's decision: a running pod whose requests have left
//! what admission would give it now (the same right-sizing, policy,
//! tolerance `min_change` and season as the webhook) is resized in place
//! through the `pods/resize` subresource where the API server has it and
//! the pod's QoS class stays the same; otherwise, or when a resize stays
//! infeasible, deferred or in progress too long, it is evicted so that its
//! owner re-creates it through the webhook. The timeouts are VPA's
//! (`InPlaceOrRecreate`): deferred over 5 minutes, in progress over an hour.
//!
//! Pure functions of the running pod, the desired pod and the time; the
//! calls are [`resize`] and [`supports_resize`].

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::mutate::{ContainerView, PodView};
use crate::quantity::Quantity;

/// A resize pending as `Deferred` longer than this is given up for an eviction.
pub const DEFERRED_LIMIT: Duration = Duration::from_secs(5 * 60);
/// A resize in progress longer than this is given up for an eviction.
pub const IN_PROGRESS_LIMIT: Duration = Duration::from_secs(60 * 60);
/// The pod condition of a resize the kubelet has not started.
pub const RESIZE_PENDING: &str = "PodResizePending";
/// The pod condition of a resize the kubelet is doing.
pub const RESIZE_IN_PROGRESS: &str = "PodResizeInProgress";

/// A pod's QoS class, as the kubelet computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has CPU and memory limits equal to its requests.
    Guaranteed,
    /// Anything between.
    Burstable,
    /// No container requests or limits CPU or memory.
    BestEffort,
}

fn get(map: Option<&BTreeMap<String, K8sQuantity>>, r: &str) -> Option<Quantity> {
    map.and_then(|m| m.get(r))
        .and_then(|q| Quantity::parse(&q.0).ok())
}

/// The QoS class of containers with `resources` (regular and init).
pub fn qos_class<'a>(
    resources: impl IntoIterator<Item = Option<&'a ResourceRequirements>>,
) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for r in resources {
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let request = get(requests, name);
            let limit = get(limits, name);
            any |= request.is_some() || limit.is_some();
            // An unset request defaults to the limit.
            match (request.or(limit), limit) {
                (Some(req), Some(lim)) if req == lim => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

fn containers(view: &PodView) -> impl Iterator<Item = &ContainerView> {
    view.spec.iter().flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
}

/// What to do with a running pod.
#[derive(Clone, Debug, PartialEq)]
pub enum DriftAction {
    /// Its requests are within the tolerance of the recommendation.
    InSync,
    /// Resize these containers in place to these resources.
    Resize(Vec<(String, ResourceRequirements)>),
    /// A resize is pending or in progress: look again later.
    Wait(String),
    /// Re-create it through the webhook (evict), for this reason.
    Evict(String),
}

/// Seconds since `time` (RFC 3339 as Kubernetes writes it), from `now` (unix seconds).
fn age(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time, now: i64) -> Duration {
    let since = time.0.as_second();
    Duration::from_secs(u64::try_from(now.saturating_sub(since)).unwrap_or(0))
}

/// The resize state of `pod` from its conditions, if one is under way.
fn resize_state(pod: &Pod, now: i64) -> Option<DriftAction> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    for c in conditions.iter().filter(|c| c.status == "True") {
        let since = c
            .last_transition_time
            .as_ref()
            .map_or(Duration::ZERO, |t| age(t, now));
        let reason = c.reason.as_deref().unwrap_or("");
        match c.type_.as_str() {
            RESIZE_PENDING if reason == "Infeasible" => {
                return Some(DriftAction::Evict(
                    "the resize is infeasible on its node".into(),
                ))
            }
            RESIZE_PENDING if since > DEFERRED_LIMIT => {
                return Some(DriftAction::Evict(format!(
                    "the resize has been deferred for {}s",
                    since.as_secs()
                )))
            }
            RESIZE_PENDING => return Some(DriftAction::Wait(format!("resize pending ({reason})"))),
            RESIZE_IN_PROGRESS if since > IN_PROGRESS_LIMIT => {
                return Some(DriftAction::Evict(format!(
                    "the resize has been in progress for {}s",
                    since.as_secs()
                )))
            }
            RESIZE_IN_PROGRESS => return Some(DriftAction::Wait("resize in progress".into())),
            _ => {}
        }
    }
    None
}

/// The action for `running`, given `desired` (its view right-sized as
/// admission would now: [`crate::mutate::ResourcesLayer::desired`]),
/// whether the API server has `pods/resize`, at `now` (unix seconds).
pub fn decide(running: &Pod, desired: &PodView, resize_supported: bool, now: i64) -> DriftAction {
    if let Some(state) = resize_state(running, now) {
        return state;
    }
    let current = PodView::from(running);
    let mut changed = Vec::new();
    for want in containers(desired) {
        let have = containers(&current).find(|c| c.name == want.name);
        if have.and_then(|c| c.resources.as_ref()) != want.resources.as_ref() {
            changed.push((
                want.name.clone(),
                want.resources.clone().unwrap_or_default(),
            ));
        }
    }
    if changed.is_empty() {
        return DriftAction::InSync;
    }
    if !resize_supported {
        return DriftAction::Evict("the API server has no pods/resize".into());
    }
    let before = qos_class(containers(&current).map(|c| c.resources.as_ref()));
    let after = qos_class(containers(desired).map(|c| c.resources.as_ref()));
    if before != after {
        return DriftAction::Evict(format!(
            "the new requests change the QoS class ({before:?} to {after:?}), which a resize cannot"
        ));
    }
    let init: Vec<&str> = desired
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    if changed
        .iter()
        .any(|(name, _)| init.contains(&name.as_str()))
    {
        // Native sidecars resize too, but through initContainers: kept to
        // re-creation until that path is tested.
        return DriftAction::Evict("a sidecar's resources change".into());
    }
    DriftAction::Resize(changed)
}

/// The body of a resize: the containers' new resources (a strategic merge
/// patch, containers merged by name).
pub fn resize_patch(containers: &[(String, ResourceRequirements)]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = containers
        .iter()
        .map(|(name, r)| serde_json::json!({"name": name, "resources": r}))
        .collect();
    serde_json::json!({"spec": {"containers": list}})
}

/// Resizes `pod`'s containers in place through `pods/resize`.
pub async fn resize(
    client: Client,
    namespace: &str,
    name: &str,
    containers: &[(String, ResourceRequirements)],
    dry_run: bool,
) -> Result<Pod, kube::Error> {
    let params = PatchParams {
        dry_run,
        field_manager: Some("nemutator-controller".to_owned()),
        ..PatchParams::default()
    };
    Api::<Pod>::namespaced(client, namespace)
        .patch_subresource(
            "resize",
            name,
            &params,
            &Patch::Strategic(resize_patch(containers)),
        )
        .await
}

/// Whether the API server serves `pods/resize` (Kubernetes 1.33 and later).
pub async fn supports_resize(client: &Client) -> Result<bool, kube::Error> {
    let list = client.list_core_api_resources("v1").await?;
    Ok(list.resources.iter().any(|r| r.name == "pods/resize"))
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
