//! Every Kubernetes API call `nemutator controller` makes, in one table: the
//! RBAC rules of `nemutator install` are derived from it (and a test checks
//! that they grant exactly these verbs), and docs/CONTROLLER.md lists it.
//!
//! | group | resource | verbs | where | made by |
//! | --- | --- | --- | --- | --- |
//! | `""` | `pods` | list, watch | cluster | the pod cache (a reflector) |
//! | `""` | `pods` | patch | cluster | `PATCH /api/v1/namespaces/{ns}/pods/{name}/metadata`; the noisy-neighbour label; the metadata patcher ([`super::labels`]): merge patches of labels and annotations |
//! | `""` | `pods/eviction` | create | cluster | the [`crate::evict::KubeEvictor`] (REST, drift, noisy neighbours) |
//! | `""` | `pods/resize` | patch | cluster | the drift reconciler's in-place resizes |
//! | `events.k8s.io` | `events` | create, patch | cluster | an Event per eviction decision (patch: a repeated Event's count) |
//! | `authentication.k8s.io` | `tokenreviews` | create | cluster | the REST API's bearer tokens |
//! | `authorization.k8s.io` | `subjectaccessreviews` | create | cluster | the REST API's access checks |
//! | `coordination.k8s.io` | `leases` | get, create, patch | own namespace | leader election |
//! | `apps` | `deployments` | create, patch | own namespace | the overprovisioning placeholder's server-side apply (create: the API server authorizes an apply that makes the object as a create) |

/// Where the controller makes a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Any namespace, or cluster-scoped resources (a ClusterRole).
    Cluster,
    /// Only the controller's own namespace (a Role there).
    OwnNamespace,
}

/// The calls on one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiCall {
    /// API group (`""`: core).
    pub group: &'static str,
    /// Resource, with its subresource after a `/`.
    pub resource: &'static str,
    /// Verbs, as RBAC spells them.
    pub verbs: &'static [&'static str],
    /// Where.
    pub scope: Scope,
}

/// Every call the controller makes.
pub const API_CALLS: &[ApiCall] = &[
    ApiCall {
        group: "",
        resource: "pods",
        verbs: &["list", "watch", "patch"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "",
        resource: "pods/eviction",
        verbs: &["create"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "",
        resource: "pods/resize",
        verbs: &["patch"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        verbs: &["create"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "authorization.k8s.io",
        resource: "subjectaccessreviews",
        verbs: &["create"],
        scope: Scope::Cluster,
    },
    ApiCall {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "patch"],
        scope: Scope::OwnNamespace,
    },
    ApiCall {
        group: "apps",
        resource: "deployments",
        verbs: &["create", "patch"],
        scope: Scope::OwnNamespace,
    },
];
