//! The secrets layer: pods that carry `nemutator.io/secrets` or env values
//! `vault:PATH#KEY[#VERSION]` get their secrets without a sidecar.
//!
//! First the [`plan`](self) (pure): which containers, which references,
//! and whether the namespace may have them (`allowed_paths`; `env`
//! injection only in `env_namespaces`). A refusal is a denial in one line.
//! Then, by the pod's injection mode (`nemutator.io/secrets-injection`,
//! default `secrets.injection`):
//!
//! - `exec` (default): the pod runs its commands through `nemutator env`
//!   ([`exec`](self)); a container without `command` gets its image's
//!   entrypoint from the registry ([`ImageLookup`]). The webhook sees no
//!   value.
//! - `env`: the references are resolved here ([`SecretResolver`], cached
//!   by the caller) and the values written into the env. They then live in
//!   the pod spec (etcd, audit logs): see docs/SECRETS.md.
//!
//! An unreachable Vault or registry is [`MutationError::Unavailable`] (a
//! 503: the webhook's `failurePolicy` decides); a missing secret, an image
//! whose entrypoint cannot be found, a refused path are denials. No value
//! reaches a log line, an error or the audit annotations.
//!
//! ```
//! use std::sync::Arc;
//! use nemutator_core::image::NoLookup;
//! use nemutator_core::mutate::{Pipeline, PodReview, SecretsLayer};
//! use nemutator_core::secret::SecretsConfig;
//! # #[derive(Debug)] struct Never;
//! # impl nemutator_core::secret::SecretResolver for Never {
//! #     fn resolve<'a>(&'a self, r: &'a nemutator_core::secret::SecretRef) -> nemutator_core::secret::ResolveFuture<'a> {
//! #         Box::pin(async move { Err(nemutator_core::secret::SecretError::NotFound(r.path.clone())) })
//! #     }
//! # }
//!
//! let layer = SecretsLayer::new(&SecretsConfig::default(), Arc::new(Never), Arc::new(NoLookup))?;
//! let pipeline = Pipeline::builder().layer(layer).build();
//! let pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {"annotations": {"nemutator.io/secrets": r#"{"PW":"vault:kv/data/app/db#password"}"#}},
//!     "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["/app"]}]},
//! }))?;
//! let out = tokio::runtime::Builder::new_current_thread().build()?
//!     .block_on(pipeline.run(PodReview::new("default", pod)));
//! // No namespace may reference anything until `secrets.allowed_paths` says so.
//! assert!(out.unwrap_err().to_string().contains("may not reference kv/data/app/db"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod exec;
mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use super::{MutationError, PodReview};
use crate::error::Chain;
use crate::image::{ImageCommand, ImageError, ImageLookup, ImageQuery};
use crate::install::DEFAULT_IMAGE;
use crate::secret::{
    ExposeSecret, Injection, ResolverKind, SecretError, SecretRef, SecretResolver, SecretsConfig,
    VaultAuth,
};

pub use exec::{
    ExecSettings, BINARY, CA_FILE, CA_PEM_ENV, IMAGE_BINARY, INIT_CONTAINER, INIT_LIMITS,
    INIT_REQUESTS, MOUNT_DIR, VOLUME,
};
pub use plan::PlanError;

/// Why the layer cannot be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SecretsSetupError {
    /// `secrets.vault.ca_file` could not be read or is not PEM.
    #[error("secrets.vault.ca_file {path}: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// Vault's Kubernetes auth without a role for the pods.
    #[error("secrets.vault.auth is kubernetes but neither secrets.vault.pod_role nor secrets.vault.role is set: pods could not log in")]
    NoPodRole,
}

struct Shared {
    config: SecretsConfig,
    exec: ExecSettings,
    resolver: Arc<dyn SecretResolver>,
    images: Arc<dyn ImageLookup>,
}

/// The secrets layer (see the module documentation).
#[derive(Clone)]
pub struct SecretsLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SecretsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsLayer")
            .field("injection", &self.shared.config.injection)
            .field("init_image", &self.shared.exec.init_image)
            .field("resolver", &self.shared.resolver)
            .field("images", &self.shared.images)
            .finish()
    }
}

impl SecretsLayer {
    /// The layer for `config`: `resolver` resolves in `env` injection (give
    /// it a cache), `images` finds entrypoints in `exec` injection. Reads
    /// `secrets.vault.ca_file` (it is handed to the pods).
    pub fn new(
        config: &SecretsConfig,
        resolver: Arc<dyn SecretResolver>,
        images: Arc<dyn ImageLookup>,
    ) -> Result<Self, SecretsSetupError> {
        let mut vault_env = Vec::new();
        let mut ca_pem = None;
        if let (ResolverKind::Vault, Some(vault)) = (config.resolver, &config.vault) {
            vault_env.push(("NEMUTATOR_VAULT_ADDR".to_owned(), vault.address.clone()));
            match (vault.exec_role(), vault.auth) {
                (Some(role), _) => {
                    vault_env.push(("NEMUTATOR_VAULT_ROLE".to_owned(), role.to_owned()));
                }
                (None, VaultAuth::Kubernetes) => return Err(SecretsSetupError::NoPodRole),
                (None, VaultAuth::Token) => {}
            }
            vault_env.push(("NEMUTATOR_VAULT_AUTH_MOUNT".to_owned(), vault.mount.clone()));
            if let Some(path) = &vault.ca_file {
                let bad = |why: String| SecretsSetupError::CaFile {
                    path: path.display().to_string(),
                    why,
                };
                let pem = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(bad("no PEM certificate".to_owned()));
                }
                vault_env.push(("NEMUTATOR_VAULT_CA".to_owned(), CA_FILE.to_owned()));
                ca_pem = Some(pem);
            }
        }
        let exec = ExecSettings {
            init_image: config
                .init_image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
            vault_env,
            ca_pem,
        };
        Ok(SecretsLayer {
            shared: Arc::new(Shared {
                config: config.clone(),
                exec,
                resolver,
                images,
            }),
        })
    }
}

impl<S> Layer<S> for SecretsLayer {
    type Service = Secrets<S>;

    fn layer(&self, inner: S) -> Secrets<S> {
        Secrets {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service of [`SecretsLayer`].
#[derive(Clone, Debug)]
pub struct Secrets<S> {
    layer: SecretsLayer,
    inner: S,
}

/// The future of [`Secrets`].
pub type SecretsFuture = Pin<Box<dyn Future<Output = Result<PodReview, MutationError>> + Send>>;

impl<S> Service<PodReview> for Secrets<S>
where
    S: Service<PodReview, Response = PodReview, Error = MutationError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = PodReview;
    type Error = MutationError;
    type Future = SecretsFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut review: PodReview) -> SecretsFuture {
        let shared = self.layer.shared.clone();
        let plan = match plan::plan(&review, &shared.config) {
            Ok(Some(plan)) => plan,
            Ok(None) => return Box::pin(self.inner.call(review)),
            Err(e) => {
                let line = Chain(&e).to_string();
                tracing::info!(namespace = %review.namespace, reason = %line, "secrets refused");
                return Box::pin(std::future::ready(Err(MutationError::Deny(line))));
            }
        };
        // The clone polled ready goes into the future; a fresh one stays.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(async move {
            let containers: Vec<&str> = plan.targets.iter().map(|t| t.name.as_str()).collect();
            let note = format!(
                "{} injection into {}",
                mode_name(plan.mode),
                containers.join(", ")
            );
            match plan.mode {
                Injection::Exec => inject_exec(&shared, &mut review, &plan).await?,
                Injection::Env => inject_env(&shared, &mut review, &plan).await?,
            }
            tracing::debug!(namespace = %review.namespace, secrets = %note, "secrets injected");
            review.audit.insert("secrets".to_owned(), note);
            inner.call(review).await
        })
    }
}

fn mode_name(mode: Injection) -> &'static str {
    match mode {
        Injection::Exec => "exec",
        Injection::Env => "env",
    }
}

/// What to do about a reference that did not resolve at admission.
fn resolve_fix(e: &SecretError) -> &'static str {
    match e {
        SecretError::NotFound(_)
        | SecretError::NoKey { .. }
        | SecretError::Deleted { .. }
        | SecretError::Destroyed { .. }
        | SecretError::NotAString { .. } => "fix the reference or write the secret",
        SecretError::PermissionDenied(_) => {
            "grant the webhook's Vault role (secrets.vault.role) read on the path"
        }
        SecretError::Login(_) | SecretError::Config(_) => {
            "check secrets.vault (address, auth, role) and the Vault auth method"
        }
        SecretError::Unavailable(_) => "retry when the secrets backend is back",
    }
}

/// A backend's failure, as the source of [`MutationError::Unavailable`].
fn cause(text: String) -> Box<dyn std::error::Error + Send + Sync> {
    text.into()
}

async fn inject_exec(
    shared: &Shared,
    review: &mut PodReview,
    plan: &plan::Plan,
) -> Result<(), MutationError> {
    let Some(spec) = review.pod.spec.as_mut() else {
        return Ok(());
    };
    let pull_secrets: Vec<String> = spec
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    let mut images: Vec<Option<ImageCommand>> = Vec::with_capacity(plan.targets.len());
    for t in &plan.targets {
        let list = if t.init {
            spec.init_containers.as_deref().unwrap_or_default()
        } else {
            &spec.containers
        };
        let Some(c) = list.get(t.index).filter(|c| exec::needs_lookup(c)) else {
            images.push(None);
            continue;
        };
        let fix = |e: &(dyn std::error::Error + 'static)| {
            MutationError::Deny(format!(
                "container {} sets no command and its image's entrypoint cannot be read: {}; set command (and args) in the pod spec",
                t.name,
                Chain(e)
            ))
        };
        let Some(image) = c.image.as_deref().filter(|i| !i.is_empty()) else {
            return Err(fix(&ImageError::Reference(String::new())));
        };
        let query = ImageQuery {
            image,
            namespace: &review.namespace,
            pull_secrets: &pull_secrets,
        };
        match shared.images.command(query).await {
            Ok(command)
                if command.entrypoint.is_empty() && command.cmd.is_empty() && c.args.is_none() =>
            {
                return Err(fix(&ImageError::NoCommand(image.to_owned())));
            }
            Ok(command) => images.push(Some(command)),
            Err(ImageError::Unavailable { image, why }) => {
                return Err(MutationError::unavailable(
                    format!("the registry of {image}"),
                    cause(why),
                ));
            }
            Err(e) => return Err(fix(&e)),
        }
    }
    exec::apply(spec, plan, &shared.exec, &images);
    Ok(())
}

async fn inject_env(
    shared: &Shared,
    review: &mut PodReview,
    plan: &plan::Plan,
) -> Result<(), MutationError> {
    let mut values: BTreeMap<&SecretRef, secrecy::SecretString> = BTreeMap::new();
    for t in &plan.targets {
        for (var, reference, _) in &t.vars {
            if values.contains_key(reference) {
                continue;
            }
            match shared.resolver.resolve(reference).await {
                Ok(v) => {
                    values.insert(reference, v);
                }
                Err(SecretError::Unavailable(why)) => {
                    let backend = match &shared.config.vault {
                        Some(v) if shared.config.resolver == ResolverKind::Vault => {
                            format!("vault at {}", v.address)
                        }
                        _ => "the secrets backend".to_owned(),
                    };
                    return Err(MutationError::unavailable(backend, cause(why)));
                }
                Err(e) => {
                    return Err(MutationError::Deny(format!(
                        "container {}: {var}: {}; {}",
                        t.name,
                        Chain(&e),
                        resolve_fix(&e)
                    )));
                }
            }
        }
    }
    let Some(spec) = review.pod.spec.as_mut() else {
        return Ok(());
    };
    for t in &plan.targets {
        let list = if t.init {
            spec.init_containers.as_deref_mut().unwrap_or_default()
        } else {
            spec.containers.as_mut_slice()
        };
        let Some(c) = list.get_mut(t.index) else {
            continue;
        };
        for (var, reference, _) in &t.vars {
            let Some(value) = values.get(reference) else {
                continue;
            };
            let value = value.expose_secret();
            let env = c.env.get_or_insert_with(Vec::new);
            match env.iter_mut().find(|e| e.name == *var) {
                Some(e) if e.value.as_deref() == Some(value) && e.value_from.is_none() => {}
                Some(e) => {
                    e.value = Some(value.to_owned());
                    e.value_from = None;
                }
                None => env.push(k8s_openapi::api::core::v1::EnvVar {
                    name: var.clone(),
                    value: Some(value.to_owned()),
                    value_from: None,
                }),
            }
        }
    }
    Ok(())
}
