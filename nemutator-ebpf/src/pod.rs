//! From a pod (`namespace/name`, optional container) to what to profile on
//! this node: the pod's `status.containerStatuses[].containerID` from the
//! Kubernetes API, then the container's cgroup or processes on this host
//! ([`Discovery::target_for`]).

use nemutator_core::k8s::{get_pod, Client as KubeClient, K8sError};
use nemutator_core::profile::{container_id_for, ContainerError, ProfileTarget};

use crate::container::{Discovery, DiscoveryError};

/// A pod's container, found on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    /// What to hand the profiler.
    pub target: ProfileTarget,
    /// The container's name in the pod.
    pub container: String,
    /// Its CRI ID, e.g. `containerd://3f7a…`.
    pub container_id: String,
}

/// Why a pod's container could not be found.
#[derive(Debug, thiserror::Error)]
pub enum PodTargetError {
    /// The API lookup failed (including "not found").
    #[error(transparent)]
    Kube(#[from] K8sError),
    /// The pod has no such container, or it has not started.
    #[error(transparent)]
    Container(#[from] ContainerError),
    /// The container is not on this node, or its ID is unusable.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// Looks the pod up and finds its container on this host.
pub async fn pod_target(
    kube: &KubeClient,
    discovery: &Discovery,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<PodTarget, PodTargetError> {
    let pod = get_pod(kube, namespace, name).await?;
    let (container, container_id) = container_id_for(&pod, container)?;
    let discovery = discovery.clone();
    let id = container_id.clone();
    // Scanning /proc and the cgroup tree is blocking file I/O.
    let target = tokio::task::spawn_blocking(move || discovery.target_for(&id))
        .await
        .map_err(|e| DiscoveryError::Io {
            path: "/proc".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
    tracing::debug!(%namespace, %name, %container, %container_id, ?target, "found the pod's container");
    Ok(PodTarget {
        target,
        container,
        container_id,
    })
}
