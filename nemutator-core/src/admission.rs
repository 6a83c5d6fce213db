//! AdmissionReview v1 in, AdmissionReview v1 out.
//!
//! [`Admission::review`] decodes a review, runs Pod creations through the
//! mutation [`Pipeline`], and answers with a JSON Patch (RFC 6902) computed
//! from the diff of the original and the mutated pod, so the patch is minimal
//! and applies to the object the API server sent. Every other kind and
//! operation is allowed unchanged. Malformed input is an [`AdmissionError`]
//! with a one-line reason (an HTTP 400), never a panic.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::object::{object, Fields};
use crate::mutate::{MutationError, Pipeline, PodReview, PodView};

mod fast;

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

/// The envelope of a review, with the object as `O`: a [`PodView`] decoded
/// in the same pass (the common case for a pod webhook; the `fast` decoder
/// gives the same for the usual shape of the text, serde's derive is the
/// reference and the fallback), or the raw JSON when that fails. Its strings
/// borrow from the body where they have no escapes: they are only compared,
/// or copied once.
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
type PodRequestIn<'a> = RequestIn<'a, PodView>;

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
    ///
    /// Written directly rather than through serde: the base64 patch is most
    /// of the document, and strings are checked for characters to escape
    /// 32 bytes at a time. The result is the same JSON as the derived
    /// `Serialize` gives (a test compares them).
    pub fn into_review_json(self) -> Vec<u8> {
        let patch_len = self.patch.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(192 + self.uid.len() + patch_len);
        out.extend_from_slice(br#"{"apiVersion":""#);
        out.extend_from_slice(API_VERSION.as_bytes());
        out.extend_from_slice(br#"","kind":"AdmissionReview","response":{"uid":"#);
        crate::json::write_str(&mut out, &self.uid);
        out.extend_from_slice(if self.allowed {
            br#","allowed":true"#.as_slice()
        } else {
            br#","allowed":false"#.as_slice()
        });
        if let Some(status) = &self.status {
            out.extend_from_slice(br#","status":"#);
            write_json(&mut out, status);
        }
        if let Some(t) = &self.patch_type {
            out.extend_from_slice(br#","patchType":"#);
            crate::json::write_str(&mut out, t);
        }
        if let Some(p) = &self.patch {
            out.extend_from_slice(br#","patch":"#);
            crate::json::write_str(&mut out, p);
        }
        if !self.audit_annotations.is_empty() {
            out.extend_from_slice(br#","auditAnnotations":"#);
            write_json(&mut out, &self.audit_annotations);
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(br#","warnings":"#);
            write_json(&mut out, &self.warnings);
        }
        out.extend_from_slice(b"}}");
        out
    }
}

/// Check that the fast decoder, where it succeeds on `text`, gives what
/// serde's derive gives (for the fuzz target and tests).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn check_fast_decoder(text: &str) {
    if let Some(fast) = fast::pod_review(text) {
        let reference = serde_json::from_str::<PodReviewIn>(text);
        assert!(
            reference.as_ref().is_ok_and(|r| *r == fast),
            "the fast decoder disagrees with serde: {fast:?} vs {reference:?}"
        );
    }
}

/// Append `value` as JSON (plain strings, maps and lists: cannot fail).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(&mut *out, value);
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
    /// The patch's operations (also base64-encoded in the response).
    pub patch: Option<crate::patch::Ops>,
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
        Ok(finish(
            prepared.response,
            prepared.snapshot,
            #[cfg(debug_assertions)]
            prepared.original,
            result,
        ))
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
        let decoded = match fast::pod_review(body) {
            Some(review) => Ok(review),
            None => serde_json::from_str::<PodReviewIn>(body),
        };
        let (uid, namespace, pod) = match decoded {
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
        // Debug builds (every test) check that layers only change what the
        // snapshot covers, by comparing with a diff of the whole view.
        #[cfg(debug_assertions)]
        let original = Box::new(pod.clone());
        let mut review = PodReview::new(&namespace, pod);
        review.now = (self.clock)();
        Ok(Prepared::Pod(PodPrepared {
            response: AdmissionResponse::allow(uid),
            snapshot,
            #[cfg(debug_assertions)]
            original,
            review,
        }))
    }
}

/// A decoded pod creation, ready for the mutation pipeline.
struct PodPrepared {
    response: AdmissionResponse,
    snapshot: crate::patch::PodSnapshot,
    #[cfg(debug_assertions)]
    original: Box<PodView>,
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
    #[cfg(debug_assertions)] original: Box<PodView>,
    result: Result<PodReview, MutationError>,
) -> Reviewed {
    let reviewed = match result {
        Ok(r) => r,
        Err(MutationError::Deny(message)) => {
            response.allowed = false;
            response.status = Some(ResponseStatus { code: 403, message });
            return Reviewed {
                response,
                outcome: Outcome::Denied,
                patch: None,
            };
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
            return Reviewed {
                response,
                outcome: Outcome::Unchanged,
                patch: None,
            };
        }
    };
    #[cfg(debug_assertions)]
    {
        let full = crate::patch::diff_pods(&original, &reviewed.pod).ok();
        let fast = patch.to_patch().ok();
        let sorted = |p: &json_patch::Patch| {
            let mut v: Vec<String> = p.0.iter().map(|op| format!("{op:?}")).collect();
            v.sort();
            v
        };
        debug_assert_eq!(
            full.as_ref().map(sorted),
            fast.as_ref().map(sorted),
            "a mutation layer changed a field outside PodSnapshot"
        );
    }
    if patch.is_empty() {
        return Reviewed {
            response,
            outcome: Outcome::Unchanged,
            patch: None,
        };
    }
    response.patch_type = Some("JSONPatch".to_string());
    response.patch = Some(base64_simd::STANDARD.encode_to_string(patch.as_json()));
    Reviewed {
        response,
        outcome: Outcome::Patched,
        patch: Some(patch),
    }
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

    /// What the derived `Serialize` writes for the same response.
    fn by_serde(r: &AdmissionResponse) -> Value {
        serde_json::json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": r})
    }

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

    #[test]
    fn hand_written_review_json_matches_serde() {
        let mut patched = AdmissionResponse::allow("705a\"b\\c\u{1}");
        patched.patch_type = Some("JSONPatch".into());
        patched.patch = Some("W3sib3AiOiJhZGQi+/==".into());
        patched.warnings = vec!["a \"warning\"\nwith a newline".into()];
        patched
            .audit_annotations
            .insert("resources".into(), "x: no recommendation; é".into());
        let mut denied = AdmissionResponse::allow("u2");
        denied.allowed = false;
        denied.status = Some(ResponseStatus {
            code: 403,
            message: "secret path \"x\" not allowed".into(),
        });
        // Not base64 (a caller may set anything): escaped, not copied.
        let mut odd = AdmissionResponse::allow("u3");
        odd.patch = Some("not \"base64\" \\ \u{1}".into());
        for r in [AdmissionResponse::allow("u1"), patched, denied, odd] {
            let expected = by_serde(&r);
            let bytes = r.into_review_json();
            let got: Value = serde_json::from_slice(&bytes).expect("valid JSON");
            assert_eq!(got, expected);
        }
    }
}
