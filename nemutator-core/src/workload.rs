//! Workload identity: which workload a pod belongs to.
//!
//! History is kept per workload and container, not per pod: pods come and go
//! (and a rollout creates a new ReplicaSet) while the workload stays. Two ways
//! in lead to the same [`WorkloadKey`]:
//!
//! * at admission, from the pod's controller owner reference
//!   ([`WorkloadKey::from_pod`]);
//! * in metrics, where only the pod name is known, from the naming schemes of
//!   the Kubernetes controllers ([`WorkloadKey::from_pod_name`]), or from a
//!   `kube_pod_owner` series when the source has one
//!   ([`WorkloadKey::from_owner`]).

use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::mutate::MetaView;

/// Alphabet of the random suffixes and `pod-template-hash` values that
/// Kubernetes generates (no vowels, no `0`, `1`, `3`).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The kind of workload that owns a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// Pods of a Deployment, across all its ReplicaSets.
    Deployment,
    /// Pods `<name>-<ordinal>`.
    StatefulSet,
    /// Pods `<name>-<5 chars>` of a DaemonSet, a Job or a bare ReplicaSet: the
    /// pod name alone cannot tell these apart, so they share one identity.
    DaemonSet,
    /// Pods of the Jobs a CronJob creates (`<cronjob>-<8 digits>`).
    CronJob,
    /// A pod with no controller.
    Pod,
}

impl WorkloadKind {
    /// The kind as Kubernetes spells it (`DaemonSet` stands for DaemonSet, Job
    /// and bare ReplicaSet pods alike).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
        }
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = UnknownKind;

    /// The kind as [`WorkloadKind::as_str`] writes it.
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::DaemonSet,
            WorkloadKind::CronJob,
            WorkloadKind::Pod,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| UnknownKind(s.chars().take(40).collect()))
    }
}

/// A workload kind that [`WorkloadKind`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown workload kind {0:?}")]
pub struct UnknownKind(pub String);

/// A workload: namespace, kind and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadKey {
    /// Namespace.
    pub namespace: String,
    /// Kind (see [`WorkloadKind`] for how ambiguous kinds are folded).
    pub kind: WorkloadKind,
    /// Name of the workload (Deployment name, not ReplicaSet name).
    pub name: String,
}

impl fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }
}

fn is_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| SAFE_ALPHABET.contains(&b))
}

/// Split `name` at its last `-`.
fn split_last(name: &str) -> Option<(&str, &str)> {
    let (head, tail) = name.rsplit_once('-')?;
    (!head.is_empty() && !tail.is_empty()).then_some((head, tail))
}

/// `<cronjob>-<8 digits>` (the scheduled time in minutes).
fn cronjob_of_job(job: &str) -> Option<&str> {
    let (head, tail) = split_last(job)?;
    (tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit())).then_some(head)
}

/// `<deployment>-<pod-template-hash>` (hash 6 to 10 characters of the safe alphabet).
fn deployment_of_replicaset<'a>(rs: &'a str, template_hash: Option<&str>) -> Option<&'a str> {
    if let Some(hash) = template_hash.filter(|h| !h.is_empty()) {
        if let Some(head) = rs.strip_suffix(hash).and_then(|h| h.strip_suffix('-')) {
            if !head.is_empty() {
                return Some(head);
            }
        }
    }
    let (head, tail) = split_last(rs)?;
    ((6..=10).contains(&tail.len()) && is_safe(tail)).then_some(head)
}

impl WorkloadKey {
    /// A key from parts.
    pub fn new(namespace: impl Into<String>, kind: WorkloadKind, name: impl Into<String>) -> Self {
        WorkloadKey {
            namespace: namespace.into(),
            kind,
            name: name.into(),
        }
    }

    /// The workload of a pod being admitted, from its controller owner
    /// reference. `namespace` is the namespace to use (the pod's own, or the
    /// admission request's when the object carries none). Returns `None` for
    /// a pod with neither a name, a `generateName` nor an owner.
    pub fn from_pod(pod: &Pod, namespace: &str) -> Option<Self> {
        Self::from_meta(&MetaView::from(&pod.metadata), namespace)
    }

    /// [`WorkloadKey::from_pod`] from the metadata the mutation chain sees.
    pub fn from_meta(meta: &MetaView, namespace: &str) -> Option<Self> {
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .or_else(|| meta.owner_references.as_ref().and_then(|o| o.first()));
        let template_hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .map(String::as_str);
        if let Some(owner) = owner {
            return Some(Self::from_owner(
                namespace,
                &owner.kind,
                &owner.name,
                template_hash,
            ));
        }
        // No owner: a bare pod, named or generated.
        let name = meta
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                meta.generate_name
                    .as_deref()
                    .map(|g| g.trim_end_matches('-'))
            })
            .filter(|n| !n.is_empty())?;
        Some(WorkloadKey::new(namespace, WorkloadKind::Pod, name))
    }

    /// The workload of a pod from its owner's kind and name (as in an owner
    /// reference, or kube-state-metrics' `kube_pod_owner`).
    pub fn from_owner(
        namespace: &str,
        owner_kind: &str,
        owner_name: &str,
        template_hash: Option<&str>,
    ) -> Self {
        let (kind, name) = match owner_kind {
            "ReplicaSet" => match deployment_of_replicaset(owner_name, template_hash) {
                Some(dep) => (WorkloadKind::Deployment, dep),
                None => (WorkloadKind::DaemonSet, owner_name),
            },
            "StatefulSet" => (WorkloadKind::StatefulSet, owner_name),
            "Job" => match cronjob_of_job(owner_name) {
                Some(cron) => (WorkloadKind::CronJob, cron),
                None => (WorkloadKind::DaemonSet, owner_name),
            },
            "DaemonSet" | "ReplicationController" => (WorkloadKind::DaemonSet, owner_name),
            // Nodes own static (mirror) pods; anything else: key by the owner.
            "Node" => (WorkloadKind::Pod, owner_name),
            _ => (WorkloadKind::DaemonSet, owner_name),
        };
        WorkloadKey::new(namespace, kind, name)
    }

    /// The workload of a pod known only by name (as in cAdvisor metrics),
    /// from the controllers' naming schemes:
    /// `<deploy>-<hash>-<5>` Deployment, `<cron>-<8 digits>-<5>` CronJob,
    /// `<name>-<ordinal>` StatefulSet, `<name>-<5>` DaemonSet/Job, else a bare Pod.
    pub fn from_pod_name(namespace: &str, pod: &str) -> Self {
        if let Some((head, suffix)) = split_last(pod) {
            if suffix.len() == 5 && is_safe(suffix) {
                if let Some(cron) = cronjob_of_job(head) {
                    return WorkloadKey::new(namespace, WorkloadKind::CronJob, cron);
                }
                if let Some(dep) = deployment_of_replicaset(head, None) {
                    return WorkloadKey::new(namespace, WorkloadKind::Deployment, dep);
                }
                return WorkloadKey::new(namespace, WorkloadKind::DaemonSet, head);
            }
            if suffix.bytes().all(|b| b.is_ascii_digit()) && suffix.len() <= 5 {
                return WorkloadKey::new(namespace, WorkloadKind::StatefulSet, head);
            }
        }
        WorkloadKey::new(namespace, WorkloadKind::Pod, pod)
    }
}

/// One container of one workload: the unit recommendations are made for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    /// The workload.
    pub workload: WorkloadKey,
    /// The container name.
    pub container: String,
}

impl ContainerRef {
    /// A reference from parts.
    pub fn new(workload: WorkloadKey, container: impl Into<String>) -> Self {
        ContainerRef {
            workload,
            container: container.into(),
        }
    }
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workload, self.container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn mk_pod(name: Option<&str>, generate: Option<&str>, owner: Option<(&str, &str)>) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = name.map(String::from);
        pod.metadata.generate_name = generate.map(String::from);
        if let Some((kind, n)) = owner {
            pod.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: kind.into(),
                name: n.into(),
                uid: "u".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]);
        }
        pod
    }

    fn key(kind: WorkloadKind, name: &str) -> WorkloadKey {
        WorkloadKey::new("ns", kind, name)
    }

    #[test]
    fn replicaset_pods_map_to_their_deployment() {
        let mut pod = mk_pod(
            None,
            Some("web-7d9f8b6c5d-"),
            Some(("ReplicaSet", "web-7d9f8b6c5d")),
        );
        assert_eq!(
            WorkloadKey::from_pod(&pod, "ns"),
            Some(key(WorkloadKind::Deployment, "web"))
        );
        // With the label, any hash shape is stripped.
        pod.metadata.labels =
            Some([("pod-template-hash".to_string(), "abc123".to_string())].into());
        pod.metadata.owner_references = mk_pod(None, None, Some(("ReplicaSet", "my-api-abc123")))
            .metadata
            .owner_references;
        assert_eq!(
            WorkloadKey::from_pod(&pod, "ns"),
            Some(key(WorkloadKind::Deployment, "my-api"))
        );
    }

    #[test]
    fn every_generation_of_a_deployment_is_one_workload() {
        let a = WorkloadKey::from_pod_name("ns", "web-7d9f8b6c5d-x2k9p");
        let b = WorkloadKey::from_pod_name("ns", "web-5c8d7f9b4-qwz7t");
        assert_eq!(a, key(WorkloadKind::Deployment, "web"));
        assert_eq!(a, b);
        let admitted = mk_pod(
            None,
            Some("web-5c8d7f9b4-"),
            Some(("ReplicaSet", "web-5c8d7f9b4")),
        );
        assert_eq!(WorkloadKey::from_pod(&admitted, "ns"), Some(a));
    }

    #[test]
    fn other_controllers() {
        let sts = mk_pod(Some("db-0"), None, Some(("StatefulSet", "db")));
        assert_eq!(
            WorkloadKey::from_pod(&sts, "ns"),
            Some(key(WorkloadKind::StatefulSet, "db"))
        );
        assert_eq!(
            WorkloadKey::from_pod_name("ns", "db-12"),
            key(WorkloadKind::StatefulSet, "db")
        );

        let ds = mk_pod(
            None,
            Some("node-exporter-"),
            Some(("DaemonSet", "node-exporter")),
        );
        assert_eq!(
            WorkloadKey::from_pod(&ds, "ns"),
            Some(key(WorkloadKind::DaemonSet, "node-exporter"))
        );
        assert_eq!(
            WorkloadKey::from_pod_name("ns", "node-exporter-x7z2q"),
            key(WorkloadKind::DaemonSet, "node-exporter")
        );

        let job = mk_pod(None, Some("migrate-"), Some(("Job", "migrate")));
        assert_eq!(
            WorkloadKey::from_pod(&job, "ns"),
            Some(key(WorkloadKind::DaemonSet, "migrate"))
        );

        let cron = mk_pod(
            None,
            Some("backup-29245678-"),
            Some(("Job", "backup-29245678")),
        );
        assert_eq!(
            WorkloadKey::from_pod(&cron, "ns"),
            Some(key(WorkloadKind::CronJob, "backup"))
        );
        assert_eq!(
            WorkloadKey::from_pod_name("ns", "backup-29245678-b7k2x"),
            key(WorkloadKind::CronJob, "backup")
        );
    }

    #[test]
    fn bare_pods() {
        let named = mk_pod(Some("debug"), None, None);
        assert_eq!(
            WorkloadKey::from_pod(&named, "ns"),
            Some(key(WorkloadKind::Pod, "debug"))
        );
        let generated = mk_pod(None, Some("tool-"), None);
        assert_eq!(
            WorkloadKey::from_pod(&generated, "ns"),
            Some(key(WorkloadKind::Pod, "tool"))
        );
        assert_eq!(WorkloadKey::from_pod(&mk_pod(None, None, None), "ns"), None);
        assert_eq!(
            WorkloadKey::from_pod_name("ns", "debug"),
            key(WorkloadKind::Pod, "debug")
        );
    }
}
