//! The answer to a review: the AdmissionReview v1 `response`, written
//! directly (the base64 patch is most of it), and how the review ended.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::API_VERSION;

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
    /// A backend a layer needs was unreachable: not answered (HTTP 503).
    Unavailable,
}

impl Outcome {
    /// Every outcome, in the order metrics list them.
    pub const ALL: [Outcome; 6] = [
        Outcome::Patched,
        Outcome::Unchanged,
        Outcome::Skipped,
        Outcome::Denied,
        Outcome::Invalid,
        Outcome::Unavailable,
    ];

    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Skipped => "skipped",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// What the derived `Serialize` writes for the same response.
    fn by_serde(r: &AdmissionResponse) -> Value {
        serde_json::json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": r})
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
