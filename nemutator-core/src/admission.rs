//! AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! [`Admission::review`] decodes a review, runs Pod creations through the
//! mutation [`Pipeline`], and answers with a JSON Patch (RFC 6902) computed
//! from the diff of the original and the mutated pod, so the patch is minimal
//! and applies to the object the API server sent. Every other kind and
//! operation is allowed unchanged. Malformed input is an [`AdmissionError`]
//! with a one-line reason (an HTTP 400), never a panic.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::Chain;
use crate::json::object::{object, Fields};
use crate::mutate::{MutationError, Pipeline, PodReview, PodView};

mod response;

pub use response::{AdmissionResponse, Outcome, ResponseStatus, Reviewed};

/// The API version of the reviews this module reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Why nemutator does not answer a body with a review: it is not a review
/// nemutator can read (a 400), or a backend a layer needs is unreachable
/// (a 503, so that the API server applies the webhook's `failurePolicy`).
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
    /// A layer could not reach a backend ([`MutationError::Unavailable`],
    /// with its cause). An AdmissionReview answer would be a decision (with
    /// `allowed: false` a denial, whatever its `status.code`); an HTTP error
    /// is a failure to call the webhook, which the API server settles by
    /// the webhook's `failurePolicy`: `Ignore` admits the pod unchanged,
    /// `Fail` refuses it.
    #[error("not reviewed: {0}")]
    Unavailable(String),
}

impl AdmissionError {
    /// The HTTP status to answer with: 503 for [`AdmissionError::Unavailable`]
    /// (without `Retry-After`, which would make the API server retry within
    /// its timeout), else 400.
    pub fn status(&self) -> u16 {
        match self {
            AdmissionError::Unavailable(_) => 503,
            AdmissionError::Malformed(_)
            | AdmissionError::NoRequest
            | AdmissionError::Unsupported(_) => 400,
        }
    }

    /// The outcome to count.
    pub fn outcome(&self) -> Outcome {
        match self {
            AdmissionError::Unavailable(_) => Outcome::Unavailable,
            AdmissionError::Malformed(_)
            | AdmissionError::NoRequest
            | AdmissionError::Unsupported(_) => Outcome::Invalid,
        }
    }
}

/// The envelope of a review, with the object as `O`: a [`PodView`] decoded
/// in the same pass by serde's derive (the common case for a pod webhook),
/// or the raw JSON when that fails. Its strings borrow from the body where
/// they have no escapes: they are only compared, or copied once.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(remote = "Self")]
struct ReviewIn<'a, O> {
    #[serde(rename = "apiVersion", default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default = "none", borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(remote = "Self", rename_all = "camelCase")]
struct RequestIn<'a, O> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Gvk<'a>,
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    operation: Option<Cow<'a, str>>,
    #[serde(default = "none")]
    object: Option<O>,
}

// The envelope, the request and its kind are JSON objects, never arrays
// (see `crate::json::object`).
impl<'de: 'a, 'a, O: Deserialize<'de>> Fields<'de> for ReviewIn<'a, O> {
    fn from_fields<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ReviewIn::deserialize(d)
    }
}

impl<'de: 'a, 'a, O: Deserialize<'de>> Deserialize<'de> for ReviewIn<'a, O> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de: 'a, 'a, O: Deserialize<'de>> Fields<'de> for RequestIn<'a, O> {
    fn from_fields<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RequestIn::deserialize(d)
    }
}

impl<'de: 'a, 'a, O: Deserialize<'de>> Deserialize<'de> for RequestIn<'a, O> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de: 'a, 'a> Fields<'de> for Gvk<'a> {
    fn from_fields<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Gvk::deserialize(d)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Gvk<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

/// `None`, as a serde default: `#[serde(default)]` would ask for `O: Default`.
fn none<T>() -> Option<T> {
    None
}

type PodReviewIn<'a> = ReviewIn<'a, PodView>;

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(remote = "Self")]
struct Gvk<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
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
        // Decoding and encoding are plain functions, so the future holds only
        // what crosses the await (a boxed pod), not a decoded Pod by value.
        let prepared = match self.prepare(body)? {
            Prepared::Done(reviewed) => return Ok(reviewed),
            Prepared::Pod(p) => p,
        };
        let result = self.pipeline.run(prepared.review).await;
        finish(prepared.response, prepared.snapshot, result)
    }

    /// Decode `body`; pod creations come back ready for the pipeline.
    fn prepare(&self, body: &[u8]) -> Result<Prepared, AdmissionError> {
        // JSON is UTF-8; checking it up front also covers the parts the
        // decoder skips, so nothing downstream meets invalid text.
        let body = std::str::from_utf8(body)
            .map_err(|e| AdmissionError::Malformed(format!("not UTF-8: {e}")))?;
        let skipped = |uid: String| {
            Prepared::Done(Reviewed {
                response: AdmissionResponse::allow(uid),
                outcome: Outcome::Skipped,
                patch: None,
            })
        };
        let check_envelope = |api: Option<&str>, kind: Option<&str>| {
            let (api, kind) = (api.unwrap_or_default(), kind.unwrap_or_default());
            if api != API_VERSION || kind != "AdmissionReview" {
                return Err(AdmissionError::Unsupported(format!("{api} {kind}")));
            }
            Ok(())
        };
        let is_pod_create = |kind: &Gvk, operation: Option<&str>, sub: Option<&str>| {
            kind.group.is_empty()
                && kind.version == "v1"
                && kind.kind == "Pod"
                && operation == Some("CREATE")
                && sub.is_none()
        };
        let (uid, namespace, pod) = match serde_json::from_str::<PodReviewIn>(body) {
            Ok(review) => {
                check_envelope(review.api_version.as_deref(), review.kind.as_deref())?;
                let req = review.request.ok_or(AdmissionError::NoRequest)?;
                match req.object {
                    Some(pod)
                        if is_pod_create(
                            &req.kind,
                            req.operation.as_deref(),
                            req.sub_resource.as_deref(),
                        ) =>
                    {
                        (req.uid.into_owned(), req.namespace, pod)
                    }
                    _ => return Ok(skipped(req.uid.into_owned())),
                }
            }
            // Not a Pod object (or not a review at all): decode the envelope
            // alone, and only then say what is wrong.
            Err(pod_err) => {
                let review: ReviewIn<&RawValue> = serde_json::from_str(body)
                    .map_err(|e| AdmissionError::Malformed(e.to_string()))?;
                check_envelope(review.api_version.as_deref(), review.kind.as_deref())?;
                let req = review.request.ok_or(AdmissionError::NoRequest)?;
                if is_pod_create(
                    &req.kind,
                    req.operation.as_deref(),
                    req.sub_resource.as_deref(),
                ) {
                    let detail = match req.object.map(|o| serde_json::from_str::<PodView>(o.get()))
                    {
                        Some(Err(e)) => e.to_string(),
                        _ => pod_err.to_string(),
                    };
                    return Err(AdmissionError::Malformed(format!(
                        "request.object: {detail}"
                    )));
                }
                return Ok(skipped(req.uid.into_owned()));
            }
        };
        let namespace = namespace.unwrap_or_default();
        let snapshot = crate::patch::PodSnapshot::of(&pod);
        let mut review = PodReview::new(&namespace, pod);
        review.now = (self.clock)();
        Ok(Prepared::Pod(PodPrepared {
            response: AdmissionResponse::allow(uid),
            snapshot,
            review,
        }))
    }
}

/// A decoded pod creation, ready for the mutation pipeline.
struct PodPrepared {
    response: AdmissionResponse,
    snapshot: crate::patch::PodSnapshot,
    review: PodReview,
}

// Returned once per review and unpacked at once; the large variant is the
// common case, so boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Prepared {
    /// Answered without the pipeline (not a pod creation).
    Done(Reviewed),
    Pod(PodPrepared),
}

/// The response to a pod creation from what the pipeline returned.
fn finish(
    mut response: AdmissionResponse,
    snapshot: crate::patch::PodSnapshot,
    result: Result<PodReview, MutationError>,
) -> Result<Reviewed, AdmissionError> {
    let reviewed = match result {
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
        // Not an answer: see `AdmissionError::Unavailable`.
        Err(e @ MutationError::Unavailable { .. }) => {
            return Err(AdmissionError::Unavailable(Chain(&e).to_string()))
        }
    };
    response.warnings = reviewed.warnings;
    response.audit_annotations = reviewed.audit;
    let patch = match snapshot.diff_ops(&reviewed.pod) {
        Ok(p) => p,
        Err(e) => {
            // A layer bug, not bad input: let the pod through unchanged.
            tracing::error!(error = %e, "patch not computed; pod admitted unchanged");
            response
                .audit_annotations
                .insert("patch".into(), e.to_string());
            return Ok(Reviewed {
                response,
                outcome: Outcome::Unchanged,
                patch: None,
            });
        }
    };
    // Debug builds (every test) check that the patch turns the original view
    // into the mutated one.
    #[cfg(debug_assertions)]
    check_patch(snapshot.original(), &reviewed.pod, &patch);
    if patch.is_empty() {
        return Ok(Reviewed {
            response,
            outcome: Outcome::Unchanged,
            patch: None,
        });
    }
    response.patch_type = Some("JSONPatch".to_string());
    response.patch = Some(base64_simd::STANDARD.encode_to_string(patch.as_json()));
    Ok(Reviewed {
        response,
        outcome: Outcome::Patched,
        patch: Some(patch),
    })
}

/// Panic unless `patch` applied to `from` (as JSON) gives `to`.
#[cfg(debug_assertions)]
fn check_patch(from: &PodView, to: &PodView, patch: &crate::patch::Ops) {
    let (Ok(mut from), Ok(to), Ok(ops)) = (
        serde_json::to_value(from),
        serde_json::to_value(to),
        patch.to_patch(),
    ) else {
        panic!("a view or its patch does not serialise");
    };
    if let Err(e) = json_patch::patch(&mut from, &ops) {
        panic!("the patch does not apply to its own view: {e}");
    }
    assert_eq!(from, to, "the patch does not give the mutated view");
}

/// The object of a review body with `patch` applied (what `review --patched`
/// prints). Works on the raw JSON, so fields nemutator does not model are kept.
pub fn patched_object(
    body: &[u8],
    patch: Option<&crate::patch::Ops>,
) -> Result<Value, AdmissionError> {
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| AdmissionError::Malformed(e.to_string()))?;
    let mut object = doc
        .get_mut("request")
        .and_then(|r| r.get_mut("object"))
        .map(Value::take)
        .ok_or(AdmissionError::NoRequest)?;
    if let Some(p) = patch {
        let p = p
            .to_patch()
            .map_err(|e| AdmissionError::Malformed(format!("patch: {e}")))?;
        json_patch::patch(&mut object, &p)
            .map_err(|e| AdmissionError::Malformed(format!("patch does not apply: {e}")))?;
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_future_stays_small() {
        // Decoding and encoding run outside the future; only the boxed pod
        // crosses the await. A value held across it (a decoded object, a
        // buffer) would grow every in-flight review.
        let admission = Admission::new(Pipeline::builder().build());
        let size = std::mem::size_of_val(&admission.review(b"{}"));
        println!("review future: {size} bytes");
        assert!(size < 1536, "the review future is {size} bytes");
    }

    /// A review whose envelope, request and object are the JSON objects
    /// Kubernetes sends, and the same with one of them written as the array
    /// of its fields in declaration order (which serde's derive would take
    /// for the struct).
    fn mk_array_forms() -> (Value, Vec<(&'static str, Value)>) {
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}});
        let gvk = serde_json::json!({"group": "", "version": "v1", "kind": "Pod"});
        let request = serde_json::json!({
            "uid": "u1", "kind": gvk, "namespace": "default", "operation": "CREATE", "object": pod,
        });
        let review = serde_json::json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request});
        let with_request = |request: Value| serde_json::json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "request": request});
        let with_in_request = |key: &str, value: Value| {
            let mut r = request.clone();
            r[key] = value;
            with_request(r)
        };
        let forms = vec![
            (
                "review",
                serde_json::json!([API_VERSION, "AdmissionReview", request]),
            ),
            (
                "request",
                with_request(serde_json::json!([
                    "u1", gvk, null, "default", "CREATE", pod
                ])),
            ),
            (
                "request.kind",
                with_in_request("kind", serde_json::json!(["", "v1", "Pod"])),
            ),
            (
                "request.object",
                with_in_request(
                    "object",
                    serde_json::json!([{"name": "p"}, {"containers": [{"name": "app"}]}]),
                ),
            ),
            (
                "request.object.metadata",
                with_in_request(
                    "object",
                    serde_json::json!({"metadata": ["p"], "spec": {"containers": []}}),
                ),
            ),
            (
                "request.object.spec",
                with_in_request("object", serde_json::json!({"spec": [[{"name": "app"}]]})),
            ),
            (
                "request.object.spec.containers[0]",
                with_in_request(
                    "object",
                    serde_json::json!({"spec": {"containers": [["app"]]}}),
                ),
            ),
        ];
        (review, forms)
    }

    #[tokio::test]
    async fn arrays_are_not_objects() {
        let admission = Admission::new(Pipeline::builder().build());
        let (review, forms) = mk_array_forms();
        let ok = admission.review(review.to_string().as_bytes()).await;
        assert_eq!(ok.map(|r| r.outcome).ok(), Some(Outcome::Unchanged));
        for (what, body) in forms {
            let text = body.to_string();
            match admission.review(text.as_bytes()).await {
                Err(AdmissionError::Malformed(m)) => {
                    assert!(!m.contains('\n'), "{what}: {m}");
                    assert!(m.contains("expected a JSON object"), "{what}: {m}");
                }
                other => panic!("{what} as an array: {:?}", other.map(|r| r.outcome)),
            }
        }
    }
}
