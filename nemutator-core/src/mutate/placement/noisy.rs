//! [`NoisyWorkloads`]: the workloads that have pods labelled
//! `nemutator.io/noisy=true` now, kept by a watch of those pods.

use std::collections::HashSet;
use std::future::{ready, Future};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};

use super::NOISY_VALUE;
use crate::annotations;
use crate::error::Chain;
use crate::mutate::MetaView;
use crate::workload::WorkloadKey;

/// Pods that have not finished: a pod that succeeded or failed makes no
/// noise (the watch sees it leave as a deletion).
const LIVE_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// The set of workloads with noisy pods, read by the placement layer on
/// every review (a lock-free load) and replaced whole by the watch. Cheap to
/// clone: clones share the set. Empty until filled.
#[derive(Clone, Debug, Default)]
pub struct NoisyWorkloads {
    set: Arc<ArcSwap<HashSet<WorkloadKey>>>,
}

impl NoisyWorkloads {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `workload` has noisy pods.
    pub fn contains(&self, workload: &WorkloadKey) -> bool {
        self.set.load().contains(workload)
    }

    /// The workloads with noisy pods now.
    pub fn snapshot(&self) -> Arc<HashSet<WorkloadKey>> {
        self.set.load_full()
    }

    /// Replace the set with the workloads of `pods` (the metadata of noisy
    /// pods; those with no workload are skipped).
    pub fn replace<'a>(&self, pods: impl IntoIterator<Item = &'a ObjectMeta>) {
        let set: HashSet<WorkloadKey> = pods
            .into_iter()
            .filter_map(|m| {
                let namespace = m.namespace.as_deref().filter(|n| !n.is_empty())?;
                WorkloadKey::from_meta(&MetaView::from(m), namespace)
            })
            .collect();
        if *self.set.load().as_ref() != set {
            tracing::info!(workloads = set.len(), "noisy workloads changed");
        }
        self.set.store(Arc::new(set));
    }

    /// Keep the set from a kube-rs reflector over the metadata of the pods
    /// labelled `nemutator.io/noisy=true` that have not finished, in every
    /// namespace (a list, then a watch; no polling; restarted with backoff
    /// on errors). Needs `list` and `watch` on pods. Run the future (e.g.
    /// with `tokio::spawn`); it runs until dropped.
    pub fn watch(&self, client: Client) -> impl Future<Output = ()> + Send + 'static {
        let (store, writer) = reflector::store::<PartialObjectMeta<Pod>>();
        let selector = format!("{}={NOISY_VALUE}", annotations::NOISY);
        let config = watcher::Config::default()
            .labels(&selector)
            .fields(LIVE_PODS);
        let stream = watcher(Api::<PartialObjectMeta<Pod>>::all(client), config)
            .default_backoff()
            .reflect(writer);
        let this = self.clone();
        async move {
            stream
                .for_each(|event| {
                    match event {
                        // The set changes once a (re)list is complete.
                        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                        Ok(_) => this.refresh(&store),
                        Err(e) => tracing::warn!(
                            error = %Chain(&e),
                            "watch of noisy pods failed; retrying with backoff"
                        ),
                    }
                    ready(())
                })
                .await;
        }
    }

    fn refresh(&self, store: &Store<PartialObjectMeta<Pod>>) {
        let pods = store.state();
        self.replace(pods.iter().map(|p| &p.metadata));
    }
}
