//! [`KubeEvictor`]: the rules of [`super::rules`] over the controller's pod
//! cache (a kube-rs reflector), the Eviction subresource, an Event per
//! decision.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, EvictParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource as _};

use super::ledger::Ledger;
use super::rules::{decide, EvictionPolicy, PassTally, PodFacts, WorkloadCount};
use super::{
    EvictError, EvictFuture, EvictionMetrics, EvictionRequest, Evictor, Outcome, PodKey, PodOutcome,
};
use crate::error::Chain;
use crate::workload::WorkloadKey;

/// The `reportingController` of nemutator's Events.
pub const REPORTING_CONTROLLER: &str = "nemutator.io/controller";
/// How long a pass waits for the pod cache's first sync.
const SYNC_WAIT: Duration = Duration::from_secs(5);
/// An Event's note is at most 1 kB.
const NOTE_MAX: usize = 1024;

/// An [`Evictor`] over the Kubernetes API: pods from `pods` (a reflector's
/// store of every pod), evictions through `pods/eviction`, Events through
/// `events.k8s.io/v1`. One pass runs at a time, so two passes cannot both
/// take the last of a limit.
///
/// Evictions go through a client of their own without kube-rs's default
/// retry of 429 answers: for an eviction a 429 is the PodDisruptionBudget's
/// answer ("blocked, ask again later"), which the default policy would
/// otherwise retry for many minutes inside one call.
pub struct KubeEvictor {
    client: Client,
    pods: Store<Pod>,
    policy: EvictionPolicy,
    ledger: tokio::sync::Mutex<Ledger>,
    metrics: Arc<EvictionMetrics>,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeEvictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEvictor")
            .field("policy", &self.policy)
            .field("pods", &self.pods.len())
            .finish_non_exhaustive()
    }
}

impl KubeEvictor {
    /// An evictor with `policy`, reading pods from `pods`; `instance` names
    /// this replica in its Events (`reportingInstance`, the pod name).
    pub fn new(
        config: kube::Config,
        pods: Store<Pod>,
        policy: EvictionPolicy,
        instance: Option<String>,
    ) -> Result<Self, kube::Error> {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance,
        };
        let recorder = Recorder::new(Client::try_from(config.clone())?, reporter);
        let mut config = config;
        config.default_retry = false;
        let client = Client::try_from(config)?;
        Ok(KubeEvictor {
            recorder,
            client,
            pods,
            policy,
            ledger: tokio::sync::Mutex::new(Ledger::new()),
            metrics: Arc::new(EvictionMetrics::new()),
        })
    }

    /// The decision counters (for `/metrics`).
    pub fn metrics(&self) -> Arc<EvictionMetrics> {
        self.metrics.clone()
    }

    /// The policy.
    pub fn policy(&self) -> &EvictionPolicy {
        &self.policy
    }

    async fn pass(&self, request: &EvictionRequest) -> Result<Vec<PodOutcome>, EvictError> {
        match tokio::time::timeout(SYNC_WAIT, self.pods.wait_until_ready()).await {
            Ok(Ok(())) => {}
            _ => return Err(EvictError::NotSynced),
        }
        // One pass at a time: the ledger is the window's shared budget.
        let mut ledger = self.ledger.lock().await;
        let now = Instant::now();
        ledger.roll(now, self.policy.window, self.policy.cooldown);

        let mut seen = HashSet::new();
        let candidates: Vec<(&PodKey, Option<Arc<Pod>>)> = request
            .pods
            .iter()
            .filter(|k| seen.insert(*k))
            .map(|k| {
                let key = ObjectRef::new(&k.name).within(&k.namespace);
                (k, self.pods.get(&key))
            })
            .collect();
        let facts: Vec<Option<PodFacts>> = candidates
            .iter()
            .map(|(_, p)| p.as_deref().map(PodFacts::of))
            .collect();
        let counts = self.counts(facts.iter().flatten());

        let mut pass = PassTally::default();
        let mut evicted = Vec::new();
        let mut out = Vec::with_capacity(candidates.len());
        for ((key, pod), facts) in candidates.iter().zip(facts) {
            let (Some(pod), Some(facts)) = (pod, facts) else {
                let outcome = Outcome::Gone;
                self.metrics.observe(&outcome);
                tracing::info!(pod = %key, outcome = outcome.label(), "eviction decision");
                out.push(PodOutcome {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    workload: None,
                    node: None,
                    outcome,
                });
                continue;
            };
            let count = facts
                .workload
                .as_ref()
                .and_then(|w| counts.get(w).copied())
                .unwrap_or_default();
            let outcome = match decide(&self.policy, &ledger, &pass, &facts, count, now) {
                Err((rule, message)) => Outcome::Refused { rule, message },
                Ok(()) => self.call(pod, request.dry_run).await,
            };
            if outcome.is_eviction() {
                pass.take(&facts);
                if !request.dry_run {
                    evicted.push(facts.clone());
                }
            }
            self.record(pod, &facts, &outcome, request).await;
            out.push(PodOutcome {
                namespace: facts.namespace.clone(),
                name: facts.name.clone(),
                workload: facts.workload.as_ref().map(WorkloadKey::to_string),
                node: facts.node.clone(),
                outcome,
            });
        }
        ledger.commit(&evicted, now);
        Ok(out)
    }

    /// Pod and ready counts of the workloads of `candidates`, from the cache.
    fn counts<'a>(
        &self,
        candidates: impl Iterator<Item = &'a PodFacts>,
    ) -> HashMap<WorkloadKey, WorkloadCount> {
        let wanted: HashSet<&WorkloadKey> =
            candidates.filter_map(|f| f.workload.as_ref()).collect();
        let namespaces: HashSet<&str> = wanted.iter().map(|w| w.namespace.as_str()).collect();
        let members: Vec<PodFacts> = self
            .pods
            .state_filter(|p| {
                p.metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces.contains(ns))
            })
            .iter()
            .map(|p| PodFacts::of(p))
            .filter(|f| f.workload.as_ref().is_some_and(|w| wanted.contains(w)))
            .collect();
        WorkloadCount::of_all(&members)
    }

    /// Asks the API server to evict `pod` (only the very pod decided on: its
    /// UID is a precondition).
    async fn call(&self, pod: &Pod, dry_run: bool) -> Outcome {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return Outcome::Gone;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let params = EvictParams {
            delete_options: Some(DeleteParams {
                dry_run,
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            }),
            post_options: PostParams {
                dry_run,
                field_manager: None,
            },
        };
        match api.evict(name, &params).await {
            Ok(_) if dry_run => Outcome::DryRun,
            Ok(_) => Outcome::Evicted,
            Err(kube::Error::Api(status)) => {
                let message = status.message.replace('\n', " ");
                match status.code {
                    429 => Outcome::Blocked { message },
                    // 409: the UID precondition failed, the pod was replaced.
                    404 | 409 => Outcome::Gone,
                    code => Outcome::Failed {
                        message: format!("Kubernetes API error {code}: {message}"),
                    },
                }
            }
            Err(e) => Outcome::Failed {
                message: Chain(&e).to_string(),
            },
        }
    }

    /// The metric, the log line and (unless a dry-run) the Event of one decision.
    async fn record(&self, pod: &Pod, facts: &PodFacts, outcome: &Outcome, req: &EvictionRequest) {
        self.metrics.observe(outcome);
        let rule = match outcome {
            Outcome::Refused { rule, .. } => rule.as_str(),
            _ => "",
        };
        tracing::info!(
            pod = %format_args!("{}/{}", facts.namespace, facts.name),
            workload = facts.workload.as_ref().map(|w| w.to_string()).unwrap_or_default(),
            node = facts.node.as_deref().unwrap_or(""),
            outcome = outcome.label(),
            rule,
            dry_run = req.dry_run,
            requester = req.requester.as_deref().unwrap_or(""),
            reason = %req.reason,
            "eviction decision"
        );
        if req.dry_run {
            return;
        }
        let by = match &req.requester {
            Some(user) => format!(" (asked by {user})"),
            None => String::new(),
        };
        let (type_, reason, note) = match outcome {
            Outcome::Evicted => (
                EventType::Normal,
                "Evicted",
                format!("evicted by nemutator: {}{by}", req.reason),
            ),
            Outcome::Blocked { message } => (
                EventType::Warning,
                "EvictionBlocked",
                format!("eviction blocked by the API server: {message}{by}"),
            ),
            Outcome::Refused { rule, message } => (
                EventType::Normal,
                "EvictionBlocked",
                format!("eviction refused by rule {}: {message}{by}", rule.as_str()),
            ),
            Outcome::Failed { message } => (
                EventType::Warning,
                "EvictionBlocked",
                format!("eviction failed: {message}{by}"),
            ),
            Outcome::DryRun | Outcome::Gone => return,
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, NOTE_MAX)),
            action: "Evict".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::warn!(
                pod = %format_args!("{}/{}", facts.namespace, facts.name),
                error = %Chain(&e),
                "could not record the eviction Event"
            );
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Evictor for KubeEvictor {
    fn evict<'a>(&'a self, request: &'a EvictionRequest) -> EvictFuture<'a> {
        Box::pin(self.pass(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
