//! The part of a Pod the mutation chain works on.
//!
//! Admission decodes a [`PodView`] instead of a whole `k8s_openapi` `Pod`:
//! of the metadata, the spec and each container only what layers read or
//! change. Every other field of the object is skipped by the decoder (serde's
//! derive of these structs is the one decoder) and never appears in the
//! patch, because the patch is the difference between two views
//! ([`crate::patch`]). Decoding a full Pod (every probe, security context...)
//! was the largest cost of a review; see docs/PERFORMANCE.md.
//!
//! A layer that needs another field adds one line to the struct's
//! `view_struct!` below, with the k8s-openapi type of that field and its JSON
//! name: that line is the decoder, the encoder and the patch of the field. If
//! its type is one the patch does not know yet, the build fails until
//! `crate::patch::diff` says how to patch it. Leaf types are k8s-openapi's, so
//! values read and written are the familiar ones.
//!
//! A layer adds an element (a container, a volume, an env var, a volume
//! mount) by pushing it onto its list, at the end or where it belongs; the
//! patch adds it whole at that index. Elements are told apart by name (volume
//! mounts by `mountPath`), so an element must keep its name, and the kept
//! ones their order.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, Pod, ResourceRequirements, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::patch::view_struct;

view_struct! {
    /// A pod as the mutation chain sees it.
    pub struct PodView {
        /// The metadata layers use.
        #[serde(default)]
        pub metadata: MetaView = "metadata",
        /// The parts of the spec layers use (`None`: the object has no spec).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub spec: Option<PodSpecView> = "spec",
    }
}

view_struct! {
    /// The fields of a pod's metadata layers read or change (typed as in
    /// k8s-openapi's `ObjectMeta`; `managedFields` and the rest are skipped).
    pub struct MetaView {
        /// `name` (usually unset at admission: `generateName` is the norm).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub name: Option<String> = "name",
        /// `generateName`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub generate_name: Option<String> = "generateName",
        /// `namespace` (the request's namespace applies when unset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub namespace: Option<String> = "namespace",
        /// `labels`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub labels: Option<BTreeMap<String, String>> = "labels",
        /// `annotations`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub annotations: Option<BTreeMap<String, String>> = "annotations",
        /// `ownerReferences`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub owner_references: Option<Vec<OwnerReference>> = "ownerReferences",
    }
}

view_struct! {
    /// The parts of a pod spec layers read or change.
    pub struct PodSpecView {
        /// `spec.containers`.
        #[serde(default)]
        pub containers: Vec<ContainerView> = "containers",
        /// `spec.initContainers` (native sidecars have `restartPolicy: Always`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub init_containers: Option<Vec<ContainerView>> = "initContainers",
        /// `spec.volumes` (whole: every volume source is modelled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub volumes: Option<Vec<Volume>> = "volumes",
        /// `spec.imagePullSecrets`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image_pull_secrets: Option<Vec<LocalObjectReference>> = "imagePullSecrets",
        /// `spec.serviceAccountName`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service_account_name: Option<String> = "serviceAccountName",
        /// `spec.affinity` (scheduling terms are appended to, the kept ones
        /// never rewritten).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub affinity: Option<Affinity> = "affinity",
        /// `spec.nodeSelector` (key by key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node_selector: Option<BTreeMap<String, String>> = "nodeSelector",
        /// `spec.tolerations` (appended to, like scheduling terms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerations: Option<Vec<Toleration>> = "tolerations",
    }
}

view_struct! {
    /// The fields of a container (or init container) layers read or change.
    pub struct ContainerView {
        /// `name`: how the patch tells containers apart.
        #[serde(default)]
        pub name: String = "name",
        /// `image`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image: Option<String> = "image",
        /// `command` (replaced whole when changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub command: Option<Vec<String>> = "command",
        /// `args` (replaced whole when changed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub args: Option<Vec<String>> = "args",
        /// `restartPolicy` (init containers only: `Always` marks a native sidecar).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub restart_policy: Option<String> = "restartPolicy",
        /// `resources`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resources: Option<ResourceRequirements> = "resources",
        /// `env` (each variable whole: `name`, `value`, `valueFrom`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub env: Option<Vec<EnvVar>> = "env",
        /// `volumeMounts` (told apart by `mountPath`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub volume_mounts: Option<Vec<VolumeMount>> = "volumeMounts",
        /// Fields the view does not model, for a layer to set whole (say the
        /// `securityContext` of a container it adds). Never decoded, so empty
        /// on the pod's own containers, whose other fields stay as they are.
        /// Must not name a field above.
        #[serde(skip_deserializing, flatten)]
        pub extra: Extra = "",
    }
}

/// Fields of a container that [`ContainerView`] does not model, set by a
/// layer (JSON name -> value). Each is written whole: added to a new
/// container with it, or set on an existing one (replacing what it had).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Extra(pub Map<String, Value>);

/// The view of typed metadata (through its JSON form: for callers that hold
/// a typed object, such as tests and controllers, not the admission path).
impl From<&ObjectMeta> for MetaView {
    fn from(m: &ObjectMeta) -> Self {
        through_json(m)
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
        through_json(p)
    }
}

/// `value` read back as a view. The view's fields have the types of the
/// same fields in k8s-openapi, so this cannot fail for a typed object (the
/// default is unreachable).
fn through_json<T: Serialize, V: serde::de::DeserializeOwned + Default>(value: &T) -> V {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
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
