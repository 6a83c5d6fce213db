//! The part of a Pod the mutation chain works on.
//!
//! Admission decodes a [`PodView`] instead of a whole `k8s_openapi` `Pod`:
//! of the metadata and of each container only what layers read or change.
//! Every other field of the object is skipped by the decoder and can never
//! appear in the patch, because the patch is the difference
//! between two views. Decoding a full Pod (every probe, volume, security
//! context...) was the largest cost of a review; see docs/PERFORMANCE.md.
//!
//! A layer that needs another field adds it here, with the k8s-openapi type
//! of that field, and, if it changes it, to [`crate::patch::PodSnapshot`].
//! Leaf types are k8s-openapi's, so values read and written are the
//! familiar ones.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, ResourceRequirements};
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Serialize};

use crate::json::object::object_only;

// No Kubernetes object is an array: see `crate::json::object`.
object_only!(PodView, MetaView, PodSpecView, ContainerView);

/// A pod as the mutation chain sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct PodView {
    /// The metadata layers use.
    #[serde(default)]
    pub metadata: MetaView,
    /// The parts of the spec layers use (`None`: the object has no spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PodSpecView>,
}

/// The fields of a pod's metadata layers read or change (named and typed as
/// in k8s-openapi's `ObjectMeta`; `managedFields` and the rest are skipped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct MetaView {
    /// `name` (usually unset at admission: `generateName` is the norm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `generateName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<String>,
    /// `namespace` (the request's namespace applies when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `labels`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `annotations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// `ownerReferences`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<Vec<OwnerReference>>,
}

impl From<&ObjectMeta> for MetaView {
    fn from(m: &ObjectMeta) -> Self {
        MetaView {
            name: m.name.clone(),
            generate_name: m.generate_name.clone(),
            namespace: m.namespace.clone(),
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
            owner_references: m.owner_references.clone(),
        }
    }
}

/// The containers of a pod spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    /// `spec.containers`.
    #[serde(default)]
    pub containers: Vec<ContainerView>,
    /// `spec.initContainers` (native sidecars have `restartPolicy: Always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<ContainerView>>,
}

/// The fields of a container layers read or change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    /// `name`.
    #[serde(default)]
    pub name: String,
    /// `restartPolicy` (init containers only: `Always` marks a native sidecar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    /// `resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
}

impl From<&Container> for ContainerView {
    fn from(c: &Container) -> Self {
        ContainerView {
            name: c.name.clone(),
            restart_policy: c.restart_policy.clone(),
            resources: c.resources.clone(),
            env: c.env.clone(),
        }
    }
}

impl From<&PodSpec> for PodSpecView {
    fn from(s: &PodSpec) -> Self {
        PodSpecView {
            containers: s.containers.iter().map(ContainerView::from).collect(),
            init_containers: s
                .init_containers
                .as_ref()
                .map(|v| v.iter().map(ContainerView::from).collect()),
        }
    }
}

/// The view of a typed Pod (for callers that hold one, such as tests and
/// controllers built on this crate).
impl From<Pod> for PodView {
    fn from(p: Pod) -> Self {
        PodView::from(&p)
    }
}

impl From<&Pod> for PodView {
    fn from(p: &Pod) -> Self {
        PodView {
            metadata: MetaView::from(&p.metadata),
            spec: p.spec.as_ref().map(PodSpecView::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_fields_layers_use_and_skips_the_rest() {
        let object = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": "web-", "labels": {"a": "b"},
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
                "creationTimestamp": null
            },
            "spec": {
                "containers": [{
                    "name": "app", "image": "x", "ports": [{"containerPort": 80}],
                    "resources": {"requests": {"cpu": "1"}},
                    "env": [{"name": "A", "value": "1"}]
                }],
                "initContainers": [{"name": "s", "restartPolicy": "Always"}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {"phase": "Pending"}
        });
        let view: PodView = serde_json::from_value(object.clone()).unwrap_or_default();
        let pod: Pod = serde_json::from_value(object).unwrap_or_default();
        assert_eq!(view, PodView::from(&pod));
        let spec = view.spec.unwrap_or_default();
        assert_eq!(spec.containers[0].name, "app");
        assert_eq!(
            spec.init_containers.unwrap_or_default()[0]
                .restart_policy
                .as_deref(),
            Some("Always")
        );
    }

    #[test]
    fn mistyped_fields_it_reads_are_errors() {
        for bad in [
            json!({"spec": {"containers": "nope"}}),
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": 1}}]}}),
            json!({"metadata": {"labels": ["x"]}}),
        ] {
            assert!(
                serde_json::from_value::<PodView>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
