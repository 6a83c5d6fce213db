//! Evicting running pods safely: the [`Evictor`] trait and its kube-rs
//! implementation, [`KubeEvictor`].
//!
//! Every eviction nemutator makes (asked through the REST API, or by the
//! controllers) goes through an `Evictor`. It only ever asks the API server
//! for an *eviction* (`pods/eviction`), so PodDisruptionBudgets hold: a 429
//! answer is reported as [`Outcome::Blocked`] and left for a later pass,
//! never forced with a delete. Before asking, each pod passes the rules of
//! [`rules`], each of which names itself when it refuses ([`Rule`]):
//!
//! | rule | refuses |
//! | --- | --- |
//! | `Terminating` | a pod already being deleted |
//! | `Mirror` | a static pod's mirror (`kubernetes.io/config.mirror`) |
//! | `Bare` | a pod without a controller owner: nothing would re-create it |
//! | `DaemonSet` | a DaemonSet's pod: it comes back on the same node |
//! | `SystemCritical` | a priority class `system-*` (`system-cluster-critical`, `system-node-critical`), or priority >= 2000000000 |
//! | `CoolDown` | a pod of a workload that had a pod evicted by an earlier pass within the cool-down |
//! | `MinReplicas` | a pod of a workload with fewer ready pods than `min_replicas` (2) |
//! | `Tolerance` | a pod whose eviction would leave fewer ready pods than the eviction tolerance (50%) keeps |
//! | `NodeLimit`, `NamespaceLimit`, `TotalLimit` | more evictions in the current window (1 min) than allowed per node, namespace, or in all |
//!
//! Dry-run runs every rule and asks the API server for a dry-run eviction
//! (`dryRun: All`), which checks the PodDisruptionBudgets without deleting
//! anything; it writes no Event and consumes no budget or cool-down.
//! Every decision is counted in `nemutator_evictions_total{outcome}`, and
//! every one that is not a dry-run is recorded as an Event on the pod
//! (reason `Evicted` or `EvictionBlocked`, reporting controller
//! `nemutator.io/controller`).
//!
//! ```
//! use nemutator_core::evict::{Outcome, Rule};
//!
//! let refused = Outcome::Refused { rule: Rule::Bare, message: "no controller".into() };
//! let json = serde_json::to_value(&refused).unwrap();
//! assert_eq!(json["outcome"], "refused");
//! assert_eq!(json["rule"], "Bare");
//! ```

mod kube;
mod ledger;
pub mod rules;
mod telemetry;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use self::kube::{KubeEvictor, REPORTING_CONTROLLER};
pub use ledger::Ledger;
pub use rules::{EvictionPolicy, PodFacts, Rule, WorkloadCount};
pub use telemetry::{EvictionMetrics, OutcomeCounts};

/// A pod by namespace and name.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct PodKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
}

impl PodKey {
    /// A key from parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One decision pass: the pods to evict, in order of preference.
#[derive(Clone, Debug, Default)]
pub struct EvictionRequest {
    /// Candidates; the rules decide which go.
    pub pods: Vec<PodKey>,
    /// Decide and ask the API server for a dry-run eviction only.
    pub dry_run: bool,
    /// Why, in the pods' Events and the logs.
    pub reason: String,
    /// Who asked (a REST caller's user name), in the Events and logs.
    pub requester: Option<String>,
}

/// What happened to one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Evicted: the API server accepted the eviction.
    Evicted,
    /// Would have been evicted: every rule passed and the API server's
    /// dry-run eviction was accepted.
    DryRun,
    /// The API server refused the eviction with 429: a PodDisruptionBudget
    /// allows no disruption now (or the server asks to slow down). Left for
    /// a later pass; never forced.
    Blocked {
        /// The API server's message.
        message: String,
    },
    /// A safety rule of nemutator refused it; the API was not asked.
    Refused {
        /// The rule.
        rule: Rule,
        /// Why, in one line.
        message: String,
    },
    /// No such pod (any more).
    Gone,
    /// The API server answered with an error.
    Failed {
        /// The error, one line.
        message: String,
    },
}

impl Outcome {
    /// The `outcome` label of `nemutator_evictions_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Evicted => "evicted",
            Outcome::DryRun => "dry_run",
            Outcome::Blocked { .. } => "blocked",
            Outcome::Refused { .. } => "refused",
            Outcome::Gone => "gone",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// Whether the pod was (or in a dry-run, would have been) evicted.
    pub fn is_eviction(&self) -> bool {
        matches!(self, Outcome::Evicted | Outcome::DryRun)
    }
}

/// The outcome for one pod of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOutcome {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// Its workload (`namespace/Kind/name`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Its node, when scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Why a whole pass failed (a single pod's failure is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvictError {
    /// The pod cache has not been filled from the API server yet.
    #[error("the pod cache is not synced with the API server yet")]
    NotSynced,
    /// The request is malformed.
    #[error("invalid eviction request: {0}")]
    Invalid(String),
}

/// The future an [`Evictor`] returns.
pub type EvictFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<PodOutcome>, EvictError>> + Send + 'a>>;

/// Evicts pods through the Eviction API under nemutator's safety rules; one
/// call is one decision pass, returning one outcome per requested pod, in
/// the request's order.
pub trait Evictor: Send + Sync + fmt::Debug {
    /// Decide for each pod of `request` and evict those that pass.
    fn evict<'a>(&'a self, request: &'a EvictionRequest) -> EvictFuture<'a>;
}

impl<E: Evictor + ?Sized> Evictor for std::sync::Arc<E> {
    fn evict<'a>(&'a self, request: &'a EvictionRequest) -> EvictFuture<'a> {
        (**self).evict(request)
    }
}
