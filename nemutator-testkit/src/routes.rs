//! Request handling of the API double: authentication, URL parsing, reads
//! from the store, and `Status` objects for every error, as the real API
//! server sends them.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::store::{ResourceKey, Store};

/// Query parameters whose meaning the double does not model; it refuses them
/// rather than answer as if they were honoured.
const UNMODELLED_PARAMS: &[&str] = &[
    "watch",
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersionMatch",
    "sendInitialEvents",
];

/// One request the double received (the token itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/default/pods/web`.
    pub path: String,
    /// Whether an `Authorization: Bearer` header was sent.
    pub bearer: bool,
    /// The status answered.
    pub status: u16,
}

/// A `meta/v1` `Status` failure, the body of every error answer.
pub fn status_body(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

fn json_response(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(code, &status_body(code, reason, message, None))
}

fn no_such_resource() -> Response<Full<Bytes>> {
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// What a URL path names.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `…/namespaces/{ns}/{plural}/{name}`
    Object(ResourceKey, &'a str, &'a str),
    /// `…/namespaces/{ns}/{plural}`
    List(ResourceKey, &'a str),
    /// `…/{plural}` (all namespaces)
    ListAll(ResourceKey),
}

fn parse_path(path: &str) -> Option<Target<'_>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (format!("/api/{v}"), rest),
        ["apis", g, v, rest @ ..] => (format!("/apis/{g}/{v}"), rest),
        _ => return None,
    };
    let key = |plural: &str| ResourceKey {
        prefix: prefix.clone(),
        plural: plural.to_owned(),
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    match rest {
        ["namespaces", ns, plural, name] => Some(Target::Object(key(plural), ns, name)),
        ["namespaces", ns, plural] => Some(Target::List(key(plural), ns)),
        [plural] if *plural != "namespaces" => Some(Target::ListAll(key(plural))),
        _ => None,
    }
}

fn list(store: &Store, key: &ResourceKey, namespace: Option<&str>) -> Response<Full<Bytes>> {
    let inner = store.lock();
    let Some(kind) = inner.kinds.get(key) else {
        return no_such_resource();
    };
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((k, ns, _), _)| k == key && namespace.is_none_or(|want| want == ns))
        .map(|(_, v)| v.clone())
        .collect();
    let body = json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version,
        "metadata": { "resourceVersion": inner.revision.to_string() },
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

fn get(store: &Store, key: ResourceKey, ns: &str, name: &str) -> Response<Full<Bytes>> {
    let inner = store.lock();
    if !inner.kinds.contains_key(&key) {
        return no_such_resource();
    }
    match inner
        .objects
        .get(&(key.clone(), ns.to_owned(), name.to_owned()))
    {
        Some(v) => json_response(StatusCode::OK, v),
        None => {
            let body = status_body(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{} \"{name}\" not found", key.plural),
                Some(json!({ "name": name, "kind": key.plural })),
            );
            json_response(StatusCode::NOT_FOUND, &body)
        }
    }
}

/// Answers one request.
pub(crate) fn handle(
    store: &Store,
    token: Option<&str>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    authorization: Option<&HeaderValue>,
) -> Response<Full<Bytes>> {
    if let Some(want) = token {
        let given = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(want) {
            return failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    if let Some(q) = query {
        let unmodelled = q
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .find(|k| UNMODELLED_PARAMS.contains(k));
        if let Some(param) = unmodelled {
            return failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("the nemutator-testkit API double does not model {param:?}"),
            );
        }
    }
    let Some(target) = parse_path(path) else {
        return no_such_resource();
    };
    if method != Method::GET {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        );
    }
    match target {
        Target::Object(key, ns, name) => get(store, key, ns, name),
        Target::List(key, ns) => list(store, &key, Some(ns)),
        Target::ListAll(key) => list(store, &key, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, plural: &str) -> ResourceKey {
        ResourceKey {
            prefix: prefix.into(),
            plural: plural.into(),
        }
    }

    #[test]
    fn paths_map_to_targets() {
        assert_eq!(
            parse_path("/api/v1/namespaces/a/pods/b"),
            Some(Target::Object(key("/api/v1", "pods"), "a", "b"))
        );
        assert_eq!(
            parse_path("/apis/coordination.k8s.io/v1/namespaces/a/leases"),
            Some(Target::List(
                key("/apis/coordination.k8s.io/v1", "leases"),
                "a"
            ))
        );
        assert_eq!(
            parse_path("/api/v1/pods"),
            Some(Target::ListAll(key("/api/v1", "pods")))
        );
        for bad in [
            "/",
            "/healthz",
            "/api/v1",
            "/api/v1/namespaces",
            "/api/v1/namespaces//pods",
            "/api/v1/namespaces/a/pods/b/status",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_kinds_and_methods_are_status_errors() {
        let store = Store::new();
        let r = handle(
            &store,
            None,
            &Method::GET,
            "/api/v1/namespaces/a/secrets/b",
            None,
            None,
        );
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = handle(
            &store,
            None,
            &Method::DELETE,
            "/api/v1/namespaces/a/pods/b",
            None,
            None,
        );
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = handle(
            &store,
            None,
            &Method::GET,
            "/api/v1/pods",
            Some("watch=true"),
            None,
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
