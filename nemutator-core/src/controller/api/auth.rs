//! Who calls the REST API and what they may do, asked of the API server as
//! kube-rbac-proxy does: the bearer token through a `TokenReview`, then the
//! access through a `SubjectAccessReview` for the user it names.
//!
//! Each route maps to Kubernetes RBAC attributes ([`Access`]), so that
//! access to nemutator's API is granted with ordinary Roles:
//!
//! | route | SubjectAccessReview |
//! | --- | --- |
//! | `POST /api/v1/evictions` | `create` `pods/eviction` in the request's namespace (what `kubectl drain` needs) |
//! | `PATCH /api/v1/namespaces/{ns}/pods/{name}/metadata` | `patch` `pods` named `{name}` in `{ns}` |
//! | `GET /api/v1/recommendations` | `get` `recommendations.nemutator.io` in `?namespace=` (all namespaces without it) |
//! | `GET /api/v1/seasons` | `get` `seasons.nemutator.io` in `?namespace=` (all namespaces without it) |
//! | `GET /api/v1/noisy` | `get` `noisy.nemutator.io` in `?namespace=` (all namespaces without it) |
//!
//! `recommendations`, `seasons` and `noisy` in group `nemutator.io` are not served
//! by the API server: they exist only as names in RBAC rules, which the
//! authorizer checks all the same.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::error::Chain;

/// The RBAC group of nemutator's own API resources.
pub const API_GROUP: &str = "nemutator.io";

/// The access a request needs, as RBAC resource attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Verb.
    pub verb: &'static str,
    /// API group (`""`: core).
    pub group: &'static str,
    /// Resource.
    pub resource: &'static str,
    /// Subresource, if any.
    pub subresource: Option<&'static str>,
    /// Namespace (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Object name, if one.
    pub name: Option<String>,
}

impl Access {
    /// `create pods/eviction` in `namespace`.
    pub fn evict(namespace: &str) -> Self {
        Access {
            verb: "create",
            group: "",
            resource: "pods",
            subresource: Some("eviction"),
            namespace: Some(namespace.to_owned()),
            name: None,
        }
    }

    /// `patch pods/NAME` in `namespace`.
    pub fn patch_pod(namespace: &str, name: &str) -> Self {
        Access {
            verb: "patch",
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
        }
    }

    /// `get RESOURCE.nemutator.io` in `namespace` (all without one).
    pub fn read(resource: &'static str, namespace: Option<&str>) -> Self {
        Access {
            verb: "get",
            group: API_GROUP,
            resource,
            subresource: None,
            namespace: namespace.map(str::to_owned),
            name: None,
        }
    }

    fn attributes(&self) -> ResourceAttributes {
        ResourceAttributes {
            verb: Some(self.verb.to_owned()),
            group: Some(self.group.to_owned()),
            resource: Some(self.resource.to_owned()),
            subresource: self.subresource.map(str::to_owned),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            ..ResourceAttributes::default()
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// User name.
    pub username: String,
    uid: Option<String>,
    groups: Option<Vec<String>>,
    extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// Why a request was not let through.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No bearer token.
    #[error("a bearer token is required (Authorization: Bearer ...)")]
    NoToken,
    /// The API server does not know the token.
    #[error("the bearer token was not accepted{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Unauthenticated {
        /// The API server's reason.
        reason: Option<String>,
    },
    /// The caller may not.
    #[error("{user} may not {verb} {what}{}{}", namespace.as_deref().map(|n| format!(" in namespace {n}")).unwrap_or_else(|| " in all namespaces".into()), reason.as_deref().filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default())]
    Forbidden {
        /// User name.
        user: String,
        /// Verb.
        verb: &'static str,
        /// Resource (and subresource).
        what: String,
        /// Namespace.
        namespace: Option<String>,
        /// The authorizer's reason.
        reason: Option<String>,
    },
    /// The API server could not be asked.
    #[error("the API server could not check the request: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::NoToken | AuthError::Unauthenticated { .. } => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::Unavailable(_) => 503,
        }
    }
}

/// Checks tokens and access against the API server.
#[derive(Clone)]
pub struct Authorizer {
    client: Client,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer").finish_non_exhaustive()
    }
}

impl Authorizer {
    /// An authorizer asking through `client`.
    pub fn new(client: Client) -> Self {
        Authorizer { client }
    }

    /// The caller of `authorization` (the header's value) if it may `access`.
    pub async fn check(
        &self,
        authorization: Option<&str>,
        access: &Access,
    ) -> Result<Caller, AuthError> {
        let caller = self.authenticate(authorization).await?;
        self.authorize(&caller, access).await?;
        Ok(caller)
    }

    /// The caller of `authorization` (the header's value): a `TokenReview`.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NoToken)?;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(Chain(&e).to_string()))?;
        let status = reviewed.status.unwrap_or_default();
        let user = status.user.filter(|_| status.authenticated == Some(true));
        let Some(user) = user else {
            return Err(AuthError::Unauthenticated {
                reason: status.error,
            });
        };
        Ok(Caller {
            username: user.username.unwrap_or_default(),
            uid: user.uid,
            groups: user.groups,
            extra: user.extra,
        })
    }

    /// Whether `caller` may `access`: a `SubjectAccessReview`.
    pub async fn authorize(&self, caller: &Caller, access: &Access) -> Result<(), AuthError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.username.clone()),
                uid: caller.uid.clone(),
                groups: caller.groups.clone(),
                extra: caller.extra.clone(),
                resource_attributes: Some(access.attributes()),
                non_resource_attributes: None,
            },
            ..SubjectAccessReview::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(Chain(&e).to_string()))?;
        let status = reviewed.status.unwrap_or_default();
        if status.allowed && status.denied != Some(true) {
            return Ok(());
        }
        let what = match access.subresource {
            Some(sub) => format!("{}/{sub}", access.resource),
            None if access.group.is_empty() => access.resource.to_owned(),
            None => format!("{}.{}", access.resource, access.group),
        };
        Err(AuthError::Forbidden {
            user: caller.username.clone(),
            verb: access.verb,
            what,
            namespace: access.namespace.clone(),
            reason: status.reason,
        })
    }
}
