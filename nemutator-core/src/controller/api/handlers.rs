//! The `/api/v1/` handlers: decode, check access, call the library, encode.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde::de::DeserializeOwned;

use super::auth::{Access, AuthError};
use super::types::{
    EvictionsRequest, EvictionsResponse, MetadataPatch, NoisyPod, NoisyResponse, PodMetadata,
    RecommendationsResponse, SeasonInfo, SeasonsResponse,
};
use super::{error, json, ApiState, BoxError, Reply, MAX_BODY_BYTES};
use crate::controller::FIELD_MANAGER;
use crate::error::Chain;
use crate::evict::{EvictError, EvictionRequest, PodKey};
use crate::mutate::SeasonOracle as _;
use crate::season::FittedProfile;
use crate::server::body::read_limited;

fn authorization<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn refused(e: AuthError) -> Reply {
    tracing::info!(error = %e, "REST request refused");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    error(status, e)
}

async fn check(
    state: &ApiState,
    auth: Option<String>,
    access: &Access,
) -> Result<String, Box<Reply>> {
    match state.auth.check(auth.as_deref(), access).await {
        Ok(caller) => Ok(caller.username),
        Err(e) => Err(Box::new(refused(e))),
    }
}

async fn body<T, B>(req: Request<B>) -> Result<T, Box<Reply>>
where
    T: DeserializeOwned,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let bytes = read_limited(req, MAX_BODY_BYTES)
        .await
        .map_err(|e| Box::new(error(e.status(), e)))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

/// The `namespace` query parameter (the only one these routes take).
fn namespace_param<B>(req: &Request<B>) -> Result<Option<String>, Box<Reply>> {
    let mut namespace = None;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("namespace", v)) if valid_name(v) => namespace = Some(v.to_owned()),
            Some(("namespace", v)) => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("namespace {v:?} is not a valid namespace name"),
                )))
            }
            _ => {
                return Err(Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {pair:?} (only namespace=NAME)"),
                )))
            }
        }
    }
    Ok(namespace)
}

/// A DNS-1123 label (namespaces) or subdomain (pod names), loosely: what
/// may appear in a path and a cache key.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `(namespace, name)` of `/api/v1/namespaces/{ns}/pods/{name}/metadata`.
pub(super) fn metadata_target(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (ns, rest) = rest.split_once("/pods/")?;
    let name = rest.strip_suffix("/metadata")?;
    (!ns.contains('/') && !name.contains('/')).then_some((ns, name))
}

pub(super) async fn evictions<B>(state: &ApiState, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    // Who first (the body is only read for a known caller), then whether
    // they may in the namespace the body names.
    let caller = match state
        .auth
        .authenticate(authorization(&req).as_deref())
        .await
    {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let request: EvictionsRequest = match body(req).await {
        Ok(r) => r,
        Err(reply) => return *reply,
    };
    if !valid_name(&request.namespace) {
        return error(
            StatusCode::BAD_REQUEST,
            "namespace must be a namespace name",
        );
    }
    if let Err(e) = state
        .auth
        .authorize(&caller, &Access::evict(&request.namespace))
        .await
    {
        return refused(e);
    }
    let caller = caller.username;
    let ns = request.namespace.as_str();
    let pods: Vec<PodKey> = match (&request.pod_name, &request.label_selector) {
        (Some(name), None) if valid_name(name) => vec![PodKey::new(ns, name.as_str())],
        (Some(_), None) => return error(StatusCode::BAD_REQUEST, "podName must be a pod name"),
        (None, Some(selector)) if !selector.is_empty() => {
            let mut keys: Vec<PodKey> = state
                .pods
                .state()
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
                .filter(|p| {
                    let labels = p.metadata.labels.as_ref();
                    selector
                        .iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                })
                .filter_map(|p| p.metadata.name.as_deref().map(|n| PodKey::new(ns, n)))
                .collect();
            keys.sort();
            keys
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "give either podName or a labelSelector with at least one label",
            )
        }
    };
    let eviction = EvictionRequest {
        pods,
        dry_run: request.dry_run,
        reason: request.reason.replace('\n', " "),
        requester: Some(caller),
    };
    match state.evictor.evict(&eviction).await {
        Ok(pods) => json(
            StatusCode::OK,
            &EvictionsResponse {
                dry_run: request.dry_run,
                pods,
            },
        ),
        Err(e @ EvictError::NotSynced) => error(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// The `?namespace=` of a GET of `resource` (`None`: every namespace), once
/// the caller may read it there.
fn readable<'a, B>(
    state: &'a ApiState,
    req: &Request<B>,
    resource: &'static str,
) -> impl Future<Output = Result<Option<String>, Box<Reply>>> + Send + 'a {
    // Read before the first await: the request's body need not be `Sync`.
    let namespace = namespace_param(req);
    let auth = authorization(req);
    async move {
        let namespace = namespace?;
        check(state, auth, &Access::read(resource, namespace.as_deref())).await?;
        Ok(namespace)
    }
}

pub(super) async fn recommendations<B>(state: &ApiState, req: Request<B>) -> Reply {
    let namespace = match readable(state, &req, "recommendations").await {
        Ok(n) => n,
        Err(reply) => return *reply,
    };
    let recommendations = state
        .recommendations
        .snapshot()
        .into_iter()
        .filter(|r| {
            namespace
                .as_deref()
                .is_none_or(|ns| r.target.workload.namespace == ns)
        })
        .filter_map(|r| serde_json::to_value(&r).ok())
        .collect();
    json(
        StatusCode::OK,
        &RecommendationsResponse {
            loaded: state.recommendations.is_loaded(),
            recommendations,
        },
    )
}

fn season_info(
    workload: Option<String>,
    fitted: &FittedProfile,
    season: Option<String>,
) -> SeasonInfo {
    SeasonInfo {
        workload,
        season,
        periods: fitted.profile.periods().to_vec(),
        lead: fitted.profile.lead(),
        fitted_at: fitted.fitted_at,
    }
}

pub(super) async fn seasons<B>(state: &ApiState, req: Request<B>) -> Reply {
    let namespace = match readable(state, &req, "seasons").await {
        Ok(n) => n,
        Err(reply) => return *reply,
    };
    let Some(store) = &state.seasons else {
        return json(StatusCode::OK, &SeasonsResponse::default());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let cluster = store.cluster().map(|c| {
        let season =
            (!c.profile.periods().is_empty()).then(|| c.profile.season_at(now).to_string());
        season_info(None, &c, season)
    });
    let mut workloads: Vec<SeasonInfo> = store
        .snapshot()
        .into_iter()
        .filter(|(k, _)| namespace.as_deref().is_none_or(|ns| k.namespace == ns))
        .map(|(k, fitted)| {
            let season = store.season(&k, now).map(|s| s.to_string());
            season_info(Some(k.to_string()), &fitted, season)
        })
        .collect();
    workloads.sort_by(|a, b| a.workload.cmp(&b.workload));
    json(
        StatusCode::OK,
        &SeasonsResponse {
            enabled: true,
            cluster,
            workloads,
        },
    )
}

pub(super) async fn noisy<B>(state: &ApiState, req: Request<B>) -> Reply {
    let namespace = match readable(state, &req, "noisy").await {
        Ok(n) => n,
        Err(reply) => return *reply,
    };
    let leader = state.leadership.is_leader();
    // A former leader's scores are stale.
    let (scored_at, entries) = if leader {
        state.noisy_scores.snapshot()
    } else {
        (None, Vec::new())
    };
    let pods = entries
        .into_iter()
        .filter(|e| {
            namespace
                .as_deref()
                .is_none_or(|ns| e.judged.key.namespace == ns)
        })
        .map(|e| {
            let j = e.judged;
            NoisyPod {
                namespace: j.key.namespace,
                name: j.key.name,
                node: j.node,
                score: j.score.score,
                verdict: j.score.verdict,
                reasons: j.score.reasons,
                noisy: j.noisy,
                labelled: e.labelled,
                precious: j.precious,
                precious_neighbours: j.precious_neighbours,
                eviction: e.eviction,
            }
        })
        .collect();
    json(
        StatusCode::OK,
        &NoisyResponse {
            enabled: state.noisy_enabled,
            leader,
            scored_at,
            pods,
        },
    )
}

pub(super) async fn metadata<B>(state: &ApiState, req: Request<B>) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let Some((ns, name)) =
        metadata_target(req.uri().path()).map(|(n, p)| (n.to_owned(), p.to_owned()))
    else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if !valid_name(&ns) || !valid_name(&name) {
        return error(StatusCode::BAD_REQUEST, "namespace and pod must be names");
    }
    let caller = match check(state, authorization(&req), &Access::patch_pod(&ns, &name)).await {
        Ok(c) => c,
        Err(reply) => return *reply,
    };
    let patch: MetadataPatch = match body(req).await {
        Ok(p) => p,
        Err(reply) => return *reply,
    };
    if patch.labels.is_empty() && patch.annotations.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "nothing to change: give labels or annotations",
        );
    }
    let merge = serde_json::json!({"metadata": {
        "labels": patch.labels,
        "annotations": patch.annotations,
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        dry_run: patch.dry_run,
        ..PatchParams::default()
    };
    let api: Api<Pod> = Api::namespaced(state.client.clone(), &ns);
    match api.patch(&name, &params, &Patch::Merge(&merge)).await {
        Ok(pod) => {
            tracing::info!(pod = %format_args!("{ns}/{name}"), user = %caller, dry_run = patch.dry_run, "pod metadata patched");
            let to_map = |m: Option<BTreeMap<String, String>>| m.unwrap_or_default();
            json(
                StatusCode::OK,
                &PodMetadata {
                    namespace: ns,
                    name,
                    labels: to_map(pod.metadata.labels),
                    annotations: to_map(pod.metadata.annotations),
                },
            )
        }
        Err(kube::Error::Api(status)) => {
            let code = StatusCode::from_u16(status.code)
                .ok()
                .filter(|c| c.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            error(code, status.message)
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, Chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mk_request(uri: &str) -> Request<()> {
        Request::builder()
            .uri(uri)
            .body(())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn metadata_paths_name_one_pod() {
        assert_eq!(
            metadata_target("/api/v1/namespaces/shop/pods/web-1/metadata"),
            Some(("shop", "web-1"))
        );
        for bad in [
            "/api/v1/namespaces/shop/pods/web-1",
            "/api/v1/namespaces/a/b/pods/web-1/metadata",
            "/api/v1/namespaces/shop/pods/a/b/metadata",
            "/api/v1/pods/web-1/metadata",
        ] {
            assert_eq!(metadata_target(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_valid_namespace_parameter_is_taken() {
        let ns = |uri: &str| namespace_param(&mk_request(uri)).map_err(|r| r.status());
        assert_eq!(ns("/api/v1/seasons"), Ok(None));
        assert_eq!(
            ns("/api/v1/seasons?namespace=shop"),
            Ok(Some("shop".into()))
        );
        assert_eq!(
            ns("/api/v1/seasons?namespace=Shop"),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            ns("/api/v1/seasons?namespace="),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(ns("/api/v1/seasons?limit=1"), Err(StatusCode::BAD_REQUEST));
    }

    proptest! {
        #[test]
        fn outside_paths_and_queries_never_panic(path in "\\PC{0,80}", query in "\\PC{0,80}") {
            let _ = metadata_target(&path);
            if let Ok(uri) = format!("/api/v1/seasons?{query}").parse::<http::Uri>() {
                let req = Request::builder().uri(uri).body(()).unwrap_or_else(|e| panic!("{e}"));
                let _ = namespace_param(&req);
            }
        }

        #[test]
        fn a_metadata_target_is_what_was_put_in(ns in "[a-z0-9-]{1,20}", name in "[a-z0-9.-]{1,40}") {
            let path = format!("/api/v1/namespaces/{ns}/pods/{name}/metadata");
            prop_assert_eq!(metadata_target(&path), Some((ns.as_str(), name.as_str())));
        }
    }
}
