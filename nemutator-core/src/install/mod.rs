//! The manifests that run nemutator in a cluster, built from typed
//! k8s-openapi objects: what `nemutator install` prints, what
//! `deploy/kustomize/` holds and what the Helm chart must render.
//!
//! ```
//! use nemutator_core::install::{manifests, InstallOptions, Tls};
//!
//! let options = InstallOptions::new("nemutator").unwrap();
//! let objects = manifests(&options, &Tls::CertManager);
//! let yaml = objects.to_yaml().unwrap();
//! assert!(yaml.contains("kind: MutatingWebhookConfiguration"));
//! assert!(yaml.contains("failurePolicy: Ignore"));
//! ```

mod certmanager;
mod certs;
pub mod controller;
mod kustomize;
mod objects;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;

pub use certmanager::{Certificate, CertificateSpec, Issuer, IssuerRef, IssuerSpec};
pub use certs::{WebhookCerts, VALIDITY};
pub use kustomize::kustomize_tree;
pub use objects::{
    labels, reads_metrics_api, token_needed, CONFIG_DIGEST_ANNOTATION, CONFIG_DIR, CONFIG_KEY,
    CONTAINER_PORT, IMAGE_ENV, METRICS_READER, OPT_OUT_VALUE, PLACEMENT_WATCHER, TLS_DIR,
    TLS_SECRET,
};

use crate::config::Config;

/// The name of nearly every object (ServiceAccount, Deployment, Service, ...).
pub const NAME: &str = "nemutator";
/// The namespace `nemutator install` uses by default.
pub const DEFAULT_NAMESPACE: &str = "nemutator";
/// The image the Deployment runs by default: this release's.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/nemutator/nemutator:", env!("CARGO_PKG_VERSION"));
/// `timeoutSeconds` of the webhook: the API server gives up after this long
/// (and, with `failurePolicy: Ignore`, admits the pod unchanged). The server's
/// own request timeout ([`crate::server::REQUEST_TIMEOUT`]) is derived from it
/// and a second shorter, so it answers first.
pub const WEBHOOK_TIMEOUT_SECONDS: i32 = 5;

/// The DNS names of nemutator's Service in `namespace`.
pub fn service_dns_names(namespace: &str) -> Vec<String> {
    vec![
        format!("{NAME}.{namespace}.svc"),
        format!("{NAME}.{namespace}.svc.cluster.local"),
        format!("{NAME}.{namespace}"),
        NAME.to_owned(),
    ]
}

/// The name of the controller's Deployment, ServiceAccount and Service.
pub const CONTROLLER_NAME: &str = "nemutator-controller";

/// The DNS names of the controller's Service in `namespace`.
pub fn controller_dns_names(namespace: &str) -> Vec<String> {
    vec![
        format!("{CONTROLLER_NAME}.{namespace}.svc"),
        format!("{CONTROLLER_NAME}.{namespace}.svc.cluster.local"),
        format!("{CONTROLLER_NAME}.{namespace}"),
        CONTROLLER_NAME.to_owned(),
    ]
}

/// Why the manifests could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not a valid namespace name.
    #[error("invalid namespace {0:?}: must be a DNS label (lowercase letters, digits, '-')")]
    Namespace(String),
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The webhook URL is not an `https://` URL with a host.
    #[error("invalid webhook URL {0:?}: want https://HOST[:PORT]/PATH")]
    WebhookUrl(String),
    /// Replicas below one.
    #[error("replicas must be at least 1, got {0}")]
    Replicas(i32),
    /// A certificate could not be made.
    #[error("generating certificates: {0}")]
    Certificate(String),
    /// The certificate directory holds some of its files only.
    #[error("{0}: incomplete certificate directory (want ca.crt, ca.key, tls.crt, tls.key, names); remove it or give another")]
    CertDirIncomplete(PathBuf),
    /// The certificate directory was made for other names.
    #[error("{dir}: holds a certificate for {kept}, not {wanted}; give another --cert-dir")]
    CertDirMismatch {
        /// The directory.
        dir: PathBuf,
        /// Names of the certificate found there.
        kept: String,
        /// Names wanted now.
        wanted: String,
    },
    /// Reading or writing a file.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An object could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(String),
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Debug)]
pub enum Tls {
    /// Made by `nemutator install`: the pair in a TLS Secret, the CA in
    /// `caBundle`.
    Generated(WebhookCerts),
    /// Issued by cert-manager, which also injects the CA into `caBundle`.
    CertManager,
}

/// What to install.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Namespace of the namespaced objects.
    pub namespace: String,
    /// The webhook's image.
    pub image: String,
    /// Webhook replicas.
    pub replicas: i32,
    /// The configuration file's text, as the ConfigMap holds it.
    pub config_yaml: String,
    /// Call the webhook at this URL instead of through its Service (a webhook
    /// running outside the cluster, as in development and in the tests).
    pub webhook_url: Option<String>,
    /// The configuration `config_yaml` holds, parsed: what it enables decides
    /// the webhook's permissions.
    pub config: Config,
}

impl InstallOptions {
    /// Defaults for `namespace`: this release's image, two replicas, the
    /// embedded default configuration, calls through the Service.
    pub fn new(namespace: &str) -> Result<Self, InstallError> {
        if !crate::k8s::is_dns_label(namespace) {
            return Err(InstallError::Namespace(namespace.to_owned()));
        }
        let config_yaml = serde_yaml::to_string(&Config::default())
            .map_err(|e| InstallError::Yaml(e.to_string()))?;
        Ok(InstallOptions {
            namespace: namespace.to_owned(),
            image: DEFAULT_IMAGE.to_owned(),
            replicas: 2,
            config_yaml,
            webhook_url: None,
            config: Config::default(),
        })
    }

    /// The configuration file's text, checked by loading it as the webhook
    /// will (`origin` names it in errors).
    pub fn with_config(
        mut self,
        text: &str,
        origin: &std::path::Path,
    ) -> Result<Self, InstallError> {
        self.config = Config::from_yaml(text, origin)?;
        self.config_yaml = text.to_owned();
        Ok(self)
    }

    /// Have the API server call `url` instead of the Service.
    pub fn with_webhook_url(mut self, url: &str) -> Result<Self, InstallError> {
        let bad = || InstallError::WebhookUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
            return Err(bad());
        }
        self.webhook_url = Some(url.to_owned());
        Ok(self)
    }

    /// A replica count of at least one.
    pub fn with_replicas(mut self, replicas: i32) -> Result<Self, InstallError> {
        if replicas < 1 {
            return Err(InstallError::Replicas(replicas));
        }
        self.replicas = replicas;
        Ok(self)
    }

    /// The DNS names of the webhook's and the controller's Services (one
    /// serving certificate for both).
    pub fn dns_names(&self) -> Vec<String> {
        let mut names = service_dns_names(&self.namespace);
        names.extend(controller_dns_names(&self.namespace));
        names
    }

    /// The names the serving certificate must hold: the Service's, and the
    /// webhook URL's host when there is one.
    pub fn serving_names(&self) -> Vec<String> {
        let mut names = self.dns_names();
        if let Some(host) = self
            .webhook_url
            .as_deref()
            .and_then(|u| u.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
        {
            if !names.contains(&host) {
                names.insert(0, host);
            }
        }
        names
    }

    /// SHA-256 of the configuration, hex: a pod-template annotation, so that a
    /// changed configuration rolls the webhook's pods.
    pub fn config_digest(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.config_yaml.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Every object of an installation. [`Manifests::objects`] destructures this
/// struct, so a new field that is not written out fails to compile.
#[derive(Clone, Debug)]
pub struct Manifests {
    /// nemutator's namespace.
    pub namespace: Namespace,
    /// The webhook's identity. Its pods mount its token only where the
    /// configuration needs it (see [`token_needed`]).
    pub service_account: ServiceAccount,
    /// With Vault's Kubernetes auth: the service account bound to
    /// `system:auth-delegator`, so that Vault may use its token as the
    /// reviewer of the tokens pods log in with (TokenReview).
    pub token_reviewer: Option<ClusterRoleBinding>,
    /// With `secrets.registry.pull_secrets`: `get` on Secrets, to read
    /// pods' `imagePullSecrets`.
    pub pull_secrets_role: Option<ClusterRole>,
    /// Its binding to the service account.
    pub pull_secrets_binding: Option<ClusterRoleBinding>,
    /// With `metrics.source: kubernetes`: `get` and `list` on
    /// `metrics.k8s.io` pods, and nothing else.
    pub metrics_reader_role: Option<ClusterRole>,
    /// Its binding to the service account.
    pub metrics_reader_binding: Option<ClusterRoleBinding>,
    /// With `placement.enabled`: `list` and `watch` on pods, and nothing
    /// else (the watch of noisy pods).
    pub placement_role: Option<ClusterRole>,
    /// Its binding to the service account.
    pub placement_binding: Option<ClusterRoleBinding>,
    /// The configuration file.
    pub config_map: ConfigMap,
    /// The serving pair, when `nemutator install` made it.
    pub tls_secret: Option<Secret>,
    /// The self-signed Issuer, with cert-manager.
    pub issuer: Option<Issuer>,
    /// The serving Certificate, with cert-manager.
    pub certificate: Option<Certificate>,
    /// The webhook.
    pub deployment: Deployment,
    /// At most one webhook pod down at a time by eviction.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The webhook's Service.
    pub service: Service,
    /// The registration with the API server.
    pub webhook: MutatingWebhookConfiguration,
    /// The controller's identity (it calls the API: its token is mounted).
    pub controller_service_account: ServiceAccount,
    /// The controller's cluster-wide calls ([`crate::controller::calls`]).
    pub controller_cluster_role: ClusterRole,
    /// Binds them to its ServiceAccount.
    pub controller_cluster_role_binding: ClusterRoleBinding,
    /// The controller's calls in nemutator's namespace (its Lease).
    pub controller_role: Role,
    /// Binds them to its ServiceAccount.
    pub controller_role_binding: RoleBinding,
    /// The controller, two replicas, one leading.
    pub controller_deployment: Deployment,
    /// The controller's REST API.
    pub controller_service: Service,
    /// The priority of the controller's overprovisioning placeholders.
    pub overprovisioning_priority_class: PriorityClass,
}

/// The objects to install for `options`, with certificates from `tls`.
pub fn manifests(options: &InstallOptions, tls: &Tls) -> Manifests {
    let (issuer, certificate) = objects::cert_manager(options, tls).unzip();
    let (pull_secrets_role, pull_secrets_binding) = objects::pull_secrets(options).unzip();
    let (metrics_reader_role, metrics_reader_binding) = objects::metrics_reader(options).unzip();
    let (placement_role, placement_binding) = objects::placement_watcher(options).unzip();
    Manifests {
        namespace: objects::namespace(options),
        service_account: objects::service_account(options),
        token_reviewer: objects::token_reviewer(options),
        pull_secrets_role,
        pull_secrets_binding,
        metrics_reader_role,
        metrics_reader_binding,
        placement_role,
        placement_binding,
        config_map: objects::config_map(options),
        tls_secret: objects::tls_secret(options, tls),
        issuer,
        certificate,
        deployment: objects::deployment(options),
        pod_disruption_budget: objects::pod_disruption_budget(options),
        service: objects::service(options),
        webhook: objects::webhook_configuration(options, tls),
        controller_service_account: controller::service_account(options),
        controller_cluster_role: controller::cluster_role(),
        controller_cluster_role_binding: controller::cluster_role_binding(options),
        controller_role: controller::role(options),
        controller_role_binding: controller::role_binding(options),
        controller_deployment: controller::deployment(options),
        controller_service: controller::service(options),
        overprovisioning_priority_class: controller::priority_class(),
    }
}

/// One object with the file name it has in `deploy/kustomize/base/`.
#[derive(Clone, Debug)]
pub struct Object {
    /// `namespace`, `deployment`, ... (the kind, lowercase).
    pub file_stem: &'static str,
    /// The object as JSON (`apiVersion`, `kind`, ...).
    pub value: serde_json::Value,
}

impl Manifests {
    /// The objects in the order `kubectl apply` should create them.
    pub fn objects(&self) -> Result<Vec<Object>, InstallError> {
        let Manifests {
            namespace,
            service_account,
            token_reviewer,
            pull_secrets_role,
            pull_secrets_binding,
            metrics_reader_role,
            metrics_reader_binding,
            placement_role,
            placement_binding,
            config_map,
            tls_secret,
            issuer,
            certificate,
            deployment,
            pod_disruption_budget,
            service,
            webhook,
            controller_service_account,
            controller_cluster_role,
            controller_cluster_role_binding,
            controller_role,
            controller_role_binding,
            controller_deployment,
            controller_service,
            overprovisioning_priority_class,
        } = self;
        let mut out = Vec::new();
        let mut push = |file_stem: &'static str,
                        v: Result<serde_json::Value, serde_json::Error>| {
            let value = v.map_err(|e| InstallError::Yaml(e.to_string()))?;
            out.push(Object { file_stem, value });
            Ok::<_, InstallError>(())
        };
        use serde_json::to_value as json;
        push("namespace", json(namespace))?;
        push("serviceaccount", json(service_account))?;
        if let Some(b) = token_reviewer {
            push("clusterrolebinding-auth-delegator", json(b))?;
        }
        if let Some(r) = pull_secrets_role {
            push("clusterrole-pull-secrets", json(r))?;
        }
        if let Some(b) = pull_secrets_binding {
            push("clusterrolebinding-pull-secrets", json(b))?;
        }
        if let Some(r) = metrics_reader_role {
            push("clusterrole-metrics-reader", json(r))?;
        }
        if let Some(b) = metrics_reader_binding {
            push("clusterrolebinding-metrics-reader", json(b))?;
        }
        if let Some(r) = placement_role {
            push("clusterrole-placement", json(r))?;
        }
        if let Some(b) = placement_binding {
            push("clusterrolebinding-placement", json(b))?;
        }
        push("configmap", json(config_map))?;
        if let Some(s) = tls_secret {
            push("secret", json(s))?;
        }
        if let Some(i) = issuer {
            push("issuer", json(i))?;
        }
        if let Some(c) = certificate {
            push("certificate", json(c))?;
        }
        push("deployment", json(deployment))?;
        push("poddisruptionbudget", json(pod_disruption_budget))?;
        push("service", json(service))?;
        push("mutatingwebhookconfiguration", json(webhook))?;
        push(
            "controller-serviceaccount",
            json(controller_service_account),
        )?;
        push("controller-clusterrole", json(controller_cluster_role))?;
        push(
            "controller-clusterrolebinding",
            json(controller_cluster_role_binding),
        )?;
        push("controller-role", json(controller_role))?;
        push("controller-rolebinding", json(controller_role_binding))?;
        push(
            "controller-priorityclass",
            json(overprovisioning_priority_class),
        )?;
        push("controller-deployment", json(controller_deployment))?;
        push("controller-service", json(controller_service))?;
        Ok(out)
    }

    /// Every object as one multi-document YAML stream for `kubectl apply -f -`.
    pub fn to_yaml(&self) -> Result<String, InstallError> {
        let mut out = String::new();
        for object in self.objects()? {
            out.push_str("---\n");
            out.push_str(&to_yaml(&object.value)?);
        }
        Ok(out)
    }
}

/// One value as YAML.
pub fn to_yaml(value: &impl serde::Serialize) -> Result<String, InstallError> {
    serde_saphyr::to_string(value).map_err(|e| InstallError::Yaml(e.to_string()))
}

/// The objects of `yaml` (a multi-document stream) keyed by kind and name,
/// for comparing two renderings of an installation.
pub fn objects_by_key(yaml: &str) -> Result<BTreeMap<String, serde_json::Value>, InstallError> {
    use serde::Deserialize as _;
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value =
            serde_json::Value::deserialize(doc).map_err(|e| InstallError::Yaml(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let field = |p: &str| {
            value
                .pointer(p)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        out.insert(
            format!("{}/{}", field("/kind"), field("/metadata/name")),
            value,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
