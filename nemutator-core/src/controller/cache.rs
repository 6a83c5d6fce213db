//! The pod cache: one kube-rs reflector over every pod of the cluster (a
//! list, then a watch; no polling), shared by the controllers and the REST
//! API. The watch restarts with backoff on errors.

use std::future::Future;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};

use crate::error::Chain;

/// A store of every pod and the task that fills it (run it, e.g. with
/// `tokio::spawn`; it runs until dropped). The store is ready
/// ([`Store::wait_until_ready`]) once the first list is in.
pub fn pod_cache(client: Client) -> (Store<Pod>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<Pod>::all(client), watcher::Config::default())
        .default_backoff()
        // Managed fields are a large part of a pod and of no use here.
        .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
        .reflect(writer);
    let task = async move {
        stream
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(error = %Chain(&e), "pod watch failed; retrying with backoff");
                }
            })
            .await;
    };
    (store, task)
}
