//! The REST API's request and response bodies (JSON, camelCase). Their
//! JSON Schemas in the OpenAPI document are derived from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::evict::{Outcome, PodOutcome};
use crate::noisy::{Reason, Verdict};

/// `POST /api/v1/evictions`: evict one pod, or the pods a label selector
/// picks, in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvictionsRequest {
    /// The namespace.
    pub namespace: String,
    /// One pod by name (either this or `labelSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pods whose labels have all these values (either this or
    /// `podName`; at least one label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<BTreeMap<String, String>>,
    /// Decide and ask the API server for dry-run evictions only.
    #[serde(default)]
    pub dry_run: bool,
    /// Why, written into the pods' Events.
    pub reason: String,
}

/// The answer to `POST /api/v1/evictions`: one outcome per pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvictionsResponse {
    /// Whether it was a dry-run.
    pub dry_run: bool,
    /// Per pod, in the order decided.
    pub pods: Vec<PodOutcome>,
}

/// `PATCH /api/v1/namespaces/{namespace}/pods/{name}/metadata`: set (a
/// string) or remove (`null`) labels and annotations of a running pod (a
/// JSON merge patch of its metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataPatch {
    /// Labels to set (`null`: remove).
    #[serde(default)]
    pub labels: BTreeMap<String, Option<String>>,
    /// Annotations to set (`null`: remove).
    #[serde(default)]
    pub annotations: BTreeMap<String, Option<String>>,
    /// Ask the API server for a dry-run patch only.
    #[serde(default)]
    pub dry_run: bool,
}

/// The pod's labels and annotations after a [`MetadataPatch`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodMetadata {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// `GET /api/v1/seasons`: the learned season profiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeasonsResponse {
    /// Whether the season model is enabled (`seasons.enabled`).
    pub enabled: bool,
    /// The cluster-wide profile (the fallback of workloads without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<SeasonInfo>,
    /// Per workload.
    pub workloads: Vec<SeasonInfo>,
}

/// One season profile, summarized.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeasonInfo {
    /// `namespace/Kind/name`; absent for the cluster profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The season now (`peak`, `off-peak`); absent without a rhythm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
    /// Periods found, seconds.
    pub periods: Vec<i64>,
    /// How long before a peak it counts as one, seconds.
    pub lead: i64,
    /// When it was fitted, unix seconds.
    pub fitted_at: i64,
}

/// `GET /api/v1/recommendations`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecommendationsResponse {
    /// Whether the store has been loaded from the metrics source.
    pub loaded: bool,
    /// Recommendations as `nemutator recommend -o json` writes them.
    #[schemars(with = "Vec<serde_json::Map<String, serde_json::Value>>")]
    pub recommendations: Vec<serde_json::Value>,
}

/// Every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// One line.
    pub error: String,
}

/// `GET /api/v1/noisy`: the noisy-neighbour scores of the leader's last
/// pass (on a replica that does not lead: `leader` false, no pods).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoisyResponse {
    /// Whether the scorer runs (`controller.noisy.enabled`).
    pub enabled: bool,
    /// Whether this replica leads (only the leader scores).
    pub leader: bool,
    /// When the last pass scored, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored_at: Option<i64>,
    /// The running pods with signals, and those labelled noisy; largest
    /// score first.
    pub pods: Vec<NoisyPod>,
}

/// One scored pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoisyPod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The largest value over its threshold (1 or more: a rule reached).
    pub score: f64,
    /// `noisy` (a rule reached), `quiet` (every rule known and clearly
    /// below) or `unsure` (a signal missing, or within the hysteresis band).
    pub verdict: Verdict,
    /// The rules reached, largest first.
    pub reasons: Vec<Reason>,
    /// Whether it is judged a noisy neighbour (hysteresis applied).
    pub noisy: bool,
    /// Whether it carries `nemutator.io/noisy=true` after the pass.
    pub labelled: bool,
    /// Whether it is precious itself (`nemutator.io/tier=precious`).
    pub precious: bool,
    /// The running precious pods on its node (`namespace/name`).
    pub precious_neighbours: Vec<String>,
    /// What the evictor did with it in the last pass, when it was handed
    /// over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction: Option<Outcome>,
}
