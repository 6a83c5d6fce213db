//! The REST API's OpenAPI 3 document, built in one place: paths written
//! here, bodies' schemas derived from [`super::types`] (schemars). Served at
//! `/openapi.json`; docs/openapi.json holds a copy that a test compares.

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};

use super::types::{
    ErrorBody, EvictionsRequest, EvictionsResponse, MetadataPatch, NoisyResponse, PodMetadata,
    RecommendationsResponse, SeasonsResponse,
};

/// The OpenAPI document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut schema = |f: fn(&mut schemars::SchemaGenerator) -> schemars::Schema| {
        serde_json::to_value(f(&mut generator)).unwrap_or(Value::Null)
    };
    fn sub<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        g.subschema_for::<T>()
    }
    let evictions_req = schema(sub::<EvictionsRequest>);
    let evictions_resp = schema(sub::<EvictionsResponse>);
    let patch_req = schema(sub::<MetadataPatch>);
    let patch_resp = schema(sub::<PodMetadata>);
    let recs = schema(sub::<RecommendationsResponse>);
    let seasons = schema(sub::<SeasonsResponse>);
    let noisy = schema(sub::<NoisyResponse>);
    let err = schema(sub::<ErrorBody>);
    let schemas = Value::Object(generator.take_definitions(true));

    let body =
        |s: &Value| json!({"required": true, "content": {"application/json": {"schema": s}}});
    let ok = |what: &str, s: &Value| json!({"description": what, "content": {"application/json": {"schema": s}}});
    let fail =
        |what: &str| json!({"description": what, "content": {"application/json": {"schema": err}}});
    let errors = |extra: &[(&str, &str)]| {
        let mut m = serde_json::Map::new();
        m.insert("400".into(), fail("Malformed request"));
        m.insert(
            "401".into(),
            fail("No bearer token, or one the API server does not accept (TokenReview)"),
        );
        m.insert(
            "403".into(),
            fail("The caller lacks the RBAC access of the route (SubjectAccessReview)"),
        );
        m.insert(
            "503".into(),
            fail("The API server could not be asked, or the pod cache is not synced"),
        );
        for (code, what) in extra {
            m.insert((*code).into(), fail(what));
        }
        m
    };
    let with = |mut responses: serde_json::Map<String, Value>, code: &str, v: Value| {
        responses.insert(code.into(), v);
        Value::Object(responses)
    };
    let namespace_param = json!({
        "name": "namespace", "in": "query", "required": false,
        "description": "Only this namespace (the access check is then namespaced too).",
        "schema": {"type": "string"}
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "nemutator controller API",
            "version": "v1",
            "description": "Evict pods under nemutator's safety rules, set labels and annotations on running pods, and read recommendations, seasons and noisy-neighbour scores. Every /api/v1 route needs a bearer token; access is checked with SubjectAccessReview (docs/CONTROLLER.md)."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/evictions": {"post": {
                "operationId": "createEvictions",
                "summary": "Evict a pod, or the pods a label selector picks, in one namespace; RBAC: create pods/eviction in the namespace.",
                "requestBody": body(&evictions_req),
                "responses": with(errors(&[]), "200", ok("One outcome per pod", &evictions_resp)),
            }},
            "/api/v1/namespaces/{namespace}/pods/{name}/metadata": {"patch": {
                "operationId": "patchPodMetadata",
                "summary": "Set or remove labels and annotations of a running pod; RBAC: patch pods/NAME in the namespace.",
                "parameters": [
                    {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
                ],
                "requestBody": body(&patch_req),
                "responses": with(
                    errors(&[("404", "No such pod"), ("422", "The API server refused the labels or annotations")]),
                    "200",
                    ok("The pod's labels and annotations after the patch", &patch_resp),
                ),
            }},
            "/api/v1/recommendations": {"get": {
                "operationId": "listRecommendations",
                "summary": "The recommendations the webhook applies; RBAC: get recommendations.nemutator.io.",
                "parameters": [namespace_param.clone()],
                "responses": with(errors(&[]), "200", ok("The recommendations", &recs)),
            }},
            "/api/v1/seasons": {"get": {
                "operationId": "listSeasons",
                "summary": "The learned season profiles and the season now; RBAC: get seasons.nemutator.io.",
                "parameters": [namespace_param.clone()],
                "responses": with(errors(&[]), "200", ok("The season profiles", &seasons)),
            }},
            "/api/v1/noisy": {"get": {
                "operationId": "listNoisy",
                "summary": "The noisy-neighbour scores of the leader's last pass; RBAC: get noisy.nemutator.io.",
                "parameters": [namespace_param],
                "responses": with(errors(&[]), "200", ok("The scored pods", &noisy)),
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_reference_resolves_and_every_route_is_described() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for r in found {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(doc["components"]["schemas"][name].is_object(), "{r}");
        }
        assert_eq!(doc["openapi"], "3.0.3");
        for (path, method) in [
            ("/api/v1/evictions", "post"),
            ("/api/v1/recommendations", "get"),
            ("/api/v1/seasons", "get"),
            ("/api/v1/noisy", "get"),
            (
                "/api/v1/namespaces/{namespace}/pods/{name}/metadata",
                "patch",
            ),
        ] {
            let op = &doc["paths"][path][method];
            assert!(op["responses"]["200"].is_object(), "{path}");
            assert!(op["responses"]["403"].is_object(), "{path}");
        }
    }

    /// docs/openapi.json holds the served document; `NEMUTATOR_BLESS=1`
    /// rewrites it after an intended change.
    #[test]
    fn the_docs_hold_the_served_openapi_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let want = serde_json::to_string_pretty(&document()).unwrap_or_default() + "\n";
        if std::env::var_os("NEMUTATOR_BLESS").is_some() {
            std::fs::write(path, &want).unwrap_or_else(|e| panic!("{e}"));
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            have == want,
            "docs/openapi.json drifted; NEMUTATOR_BLESS=1 cargo test -p nemutator-core openapi rewrites it"
        );
    }
}
