//! Leader election over a `coordination.k8s.io/v1` Lease (kube-lease-manager:
//! server-side apply of the Lease, renewed before it expires). The replica
//! that holds the Lease runs the controllers; every replica serves the REST
//! API. A leader that dies stops renewing, and another takes the Lease once
//! it has expired (at most the lease duration later); a leader that shuts
//! down releases it at once.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Where and how long to hold the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease lasts without renewal.
    pub duration: Duration,
}

/// The default name of the controller's Lease.
pub const LEASE_NAME: &str = "nemutator-controller";

/// Why the election could not start.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}")]
pub struct LeaderError {
    namespace: String,
    name: String,
    #[source]
    source: LeaseManagerError,
}

/// Whether this replica leads, as it changes; dropping every receiver ends
/// the election and releases the Lease.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
}

impl Leadership {
    /// Joins the election; the returned future runs it (spawn it) until
    /// `shutdown` resolves, then releases the Lease (so that another
    /// replica takes over at once) and ends.
    pub async fn join(
        client: Client,
        config: &LeaseConfig,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(Leadership, impl std::future::Future<Output = ()> + Send), LeaderError> {
        let err = |source| LeaderError {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            source,
        };
        let secs = config.duration.as_secs().max(2);
        // Renewed a third of the duration before it runs out.
        let grace = (secs / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, &config.name)
            .with_namespace(&config.namespace)
            .with_identity(&config.identity)
            .with_duration(secs)
            .with_grace(grace)
            .build()
            .await
            .map_err(err)?;
        let (mut lease, task) = manager.watch().await;
        let leads = *lease.borrow_and_update();
        let (tx, rx) = watch::channel(leads);
        let identity = config.identity.clone();
        tracing::info!(%identity, leading = leads, "joined the leader election");
        let run = async move {
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    changed = lease.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let leads = *lease.borrow_and_update();
                        if leads {
                            tracing::info!(%identity, "leading");
                        } else {
                            tracing::info!(%identity, "not leading");
                        }
                        tx.send_replace(leads);
                    }
                }
            }
            tx.send_replace(false);
            // Closing the channel makes the manager release the Lease.
            drop(lease);
            match task.await {
                Ok(Ok(_)) => tracing::info!(%identity, "released the Lease"),
                Ok(Err(e)) => {
                    tracing::warn!(%identity, error = %crate::error::Chain(&e), "leader election ended")
                }
                Err(e) => tracing::warn!(%identity, error = %e, "leader election task failed"),
            }
        };
        Ok((Leadership { rx }, run))
    }

    /// A fixed answer (for tests and single-replica use).
    pub fn fixed(leader: bool) -> Leadership {
        let (tx, rx) = watch::channel(leader);
        // The receiver keeps the last value after the sender is gone.
        drop(tx);
        Leadership { rx }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until the answer changes; `None` once the election ended.
    pub async fn changed(&mut self) -> Option<bool> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }
}
