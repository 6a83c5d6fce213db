//! AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! [`Admission::review`] decodes a review, runs Pod creations through the
//! mutation [`Pipeline`], and answers with a JSON Patch (RFC 6902) computed
//! from the diff of the original and the mutated pod, so the patch is minimal
//! and applies to the object the API server sent. Every other kind and
//! operation is allowed unchanged. Malformed input is an [`AdmissionError`]
//! with a one-line reason (an HTTP 400), never a panic.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::mutate::{MutationError, Pipeline, PodReview};

/// The API version of the reviews this module reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why a body is not a review nemutator can answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// Not JSON, or not shaped like an AdmissionReview.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    /// A review without `request`.
    #[error("malformed AdmissionReview: no request")]
    NoRequest,
    /// Another API version or kind.
    #[error("unsupported review {0:?}: expected admission.k8s.io/v1 AdmissionReview")]
    Unsupported(String),
}

#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize, Default)]
struct Gvk {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    uid: String,
    #[serde(default)]
    kind: Gvk,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

/// The `status` of a denied response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseStatus {
    /// HTTP-like status code.
    pub code: u16,
    /// One-line reason shown to the user.
    pub message: String,
}

/// An AdmissionReview v1 `response`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's `uid`, echoed.
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Why it was denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ResponseStatus>,
    /// `JSONPatch` when `patch` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// The base64 of the RFC 6902 patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// Notes for the audit log.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// Warnings for the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    /// Allow `uid` unchanged.
    pub fn allow(uid: impl Into<String>) -> Self {
        AdmissionResponse {
            uid: uid.into(),
            allowed: true,
            status: None,
            patch_type: None,
            patch: None,
            audit_annotations: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    /// The whole AdmissionReview document carrying this response.
    pub fn into_review_json(self) -> Vec<u8> {
        #[derive(Serialize)]
        struct ReviewOut {
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            kind: &'static str,
            response: AdmissionResponse,
        }
        // Serialising plain strings and maps cannot fail.
        serde_json::to_vec(&ReviewOut {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: self,
        })
        .unwrap_or_default()
    }
}

/// How a review ended, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A pod was changed.
    Patched,
    /// A pod was reviewed and nothing needed to change.
    Unchanged,
    /// Not a pod creation: allowed without a look.
    Skipped,
    /// A layer denied the pod.
    Denied,
    /// The body was not a valid review.
    Invalid,
}

impl Outcome {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
        }
    }
}

/// A reviewed request.
#[derive(Clone, Debug)]
pub struct Reviewed {
    /// The response to send.
    pub response: AdmissionResponse,
    /// How it ended.
    pub outcome: Outcome,
    /// The patch, decoded (also base64-encoded in the response).
    pub patch: Option<json_patch::Patch>,
}

/// A source of "now", in unix seconds.
pub type Clock = fn() -> i64;

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Reviews AdmissionReview bodies with a mutation pipeline.
#[derive(Clone, Debug)]
pub struct Admission {
    pipeline: Pipeline,
    clock: Clock,
}

impl Admission {
    /// An admission handler running `pipeline` on pod creations.
    pub fn new(pipeline: Pipeline) -> Self {
        Admission {
            pipeline,
            clock: wall_clock,
        }
    }

    /// Evaluate seasons at the time `clock` gives instead of the wall clock
    /// (for tests and offline what-ifs).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Review one AdmissionReview body.
    pub async fn review(&self, body: &[u8]) -> Result<Reviewed, AdmissionError> {
        // JSON is UTF-8; checking it up front also covers the parts the
        // decoder skips, so nothing downstream meets invalid text.
        let body = std::str::from_utf8(body)
            .map_err(|e| AdmissionError::Malformed(format!("not UTF-8: {e}")))?;
        let review: ReviewIn<'_> =
            serde_json::from_str(body).map_err(|e| AdmissionError::Malformed(e.to_string()))?;
        let api = review.api_version.as_deref().unwrap_or_default();
        let kind = review.kind.as_deref().unwrap_or_default();
        if api != API_VERSION || kind != "AdmissionReview" {
            return Err(AdmissionError::Unsupported(format!("{api} {kind}")));
        }
        let req = review.request.ok_or(AdmissionError::NoRequest)?;
        let skipped = |uid: String| Reviewed {
            response: AdmissionResponse::allow(uid),
            outcome: Outcome::Skipped,
            patch: None,
        };
        let is_pod =
            req.kind.group.is_empty() && req.kind.version == "v1" && req.kind.kind == "Pod";
        let is_create = req.operation.as_deref() == Some("CREATE");
        let (true, true, None, Some(object)) =
            (is_pod, is_create, req.sub_resource.as_ref(), req.object)
        else {
            return Ok(skipped(req.uid));
        };
        let pod: Pod = serde_json::from_str(object.get())
            .map_err(|e| AdmissionError::Malformed(format!("request.object: {e}")))?;
        let original = pod.clone();
        let namespace = req.namespace.as_deref().unwrap_or_default();
        let mut response = AdmissionResponse::allow(req.uid);
        let mut review = PodReview::new(namespace, pod);
        review.now = (self.clock)();
        let reviewed = match self.pipeline.run(review).await {
            Ok(r) => r,
            Err(MutationError::Deny(message)) => {
                response.allowed = false;
                response.status = Some(ResponseStatus { code: 403, message });
                return Ok(Reviewed {
                    response,
                    outcome: Outcome::Denied,
                    patch: None,
                });
            }
        };
        response.warnings = reviewed.warnings;
        response.audit_annotations = reviewed.audit;
        let patch = crate::patch::diff_pods(original, reviewed.pod)
            .map_err(|e| AdmissionError::Malformed(format!("request.object: {e}")))?;
        if patch.0.is_empty() {
            return Ok(Reviewed {
                response,
                outcome: Outcome::Unchanged,
                patch: None,
            });
        }
        let bytes = serde_json::to_vec(&patch).unwrap_or_default();
        response.patch_type = Some("JSONPatch".to_string());
        response.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        Ok(Reviewed {
            response,
            outcome: Outcome::Patched,
            patch: Some(patch),
        })
    }
}

/// The object of a review body with `patch` applied (what `review --patched`
/// prints). Works on the raw JSON, so fields nemutator does not model are kept.
pub fn patched_object(
    body: &[u8],
    patch: Option<&json_patch::Patch>,
) -> Result<Value, AdmissionError> {
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| AdmissionError::Malformed(e.to_string()))?;
    let mut object = doc
        .get_mut("request")
        .and_then(|r| r.get_mut("object"))
        .map(Value::take)
        .ok_or(AdmissionError::NoRequest)?;
    if let Some(p) = patch {
        json_patch::patch(&mut object, p)
            .map_err(|e| AdmissionError::Malformed(format!("patch does not apply: {e}")))?;
    }
    Ok(object)
}
