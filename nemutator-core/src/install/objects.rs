//! The typed objects of an installation, one builder per object.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    HTTPGetAction, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

use super::certmanager::{
    api_version, Certificate, CertificateSpec, Issuer, IssuerRef, IssuerSpec,
};
use super::{InstallOptions, Tls, NAME};
use crate::annotations;

/// Port the webhook container listens on.
pub const CONTAINER_PORT: i32 = 8443;
/// The variable holding the webhook's own image, set on its container: the
/// default image of the init container of `exec` injection.
pub const IMAGE_ENV: &str = "NEMUTATOR_IMAGE";
/// Where the serving pair is mounted in the webhook's pods.
pub const TLS_DIR: &str = "/etc/nemutator/tls";
/// Where the configuration is mounted.
pub const CONFIG_DIR: &str = "/etc/nemutator/config";
/// The configuration's key in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// The TLS Secret's name (made by `nemutator install` or by cert-manager).
pub const TLS_SECRET: &str = "nemutator-tls";
/// The pod-template annotation holding the configuration's digest, so that
/// a new configuration rolls the pods.
pub const CONFIG_DIGEST_ANNOTATION: &str = "nemutator.io/config-sha256";
/// The label that opts a pod out before the API server calls the webhook
/// (the annotation of the same key opts out inside the webhook).
pub const OPT_OUT_VALUE: &str = "off";

/// The labels every object carries.
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "webhook".to_owned(),
        ),
        ("app.kubernetes.io/part-of".to_owned(), NAME.to_owned()),
    ])
}

/// The labels that select the webhook's pods.
fn selector_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "webhook".to_owned(),
        ),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

pub(super) fn namespace(o: &InstallOptions) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(o.namespace.clone()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub(super) fn service_account(o: &InstallOptions) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(NAME, Some(&o.namespace)),
        // Pods mount the token only where the configuration needs it.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// Whether the webhook's pods mount their service-account token: to log in
/// to Vault themselves (`env` injection with Kubernetes auth), to read pull
/// secrets, to list `metrics.k8s.io` pod metrics (`metrics.source:
/// kubernetes`), or to watch noisy pods (`placement.enabled`). Otherwise the webhook calls no API: no token to steal.
pub fn token_needed(o: &InstallOptions) -> bool {
    let s = &o.config.secrets;
    s.webhook_logs_in()
        || (s.enabled && s.registry.lookup && s.registry.pull_secrets)
        || reads_metrics_api(o)
        || o.config.placement.enabled
}

/// Does the webhook read `metrics.k8s.io` (`metrics.source: kubernetes`)?
pub fn reads_metrics_api(o: &InstallOptions) -> bool {
    o.config.metrics.source == crate::config::MetricsBackend::Kubernetes
}

/// The ClusterRole (and binding) of the `kubernetes` metrics source.
pub const METRICS_READER: &str = "nemutator-metrics-reader";

/// `get` and `list` on `metrics.k8s.io` pods, only with `metrics.source:
/// kubernetes`.
pub(super) fn metrics_reader(o: &InstallOptions) -> Option<(ClusterRole, ClusterRoleBinding)> {
    if !reads_metrics_api(o) {
        return None;
    }
    let role = ClusterRole {
        metadata: meta(METRICS_READER, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["metrics.k8s.io".to_owned()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(METRICS_READER, None),
        role_ref: cluster_role_ref(METRICS_READER),
        subjects: Some(vec![subject(o)]),
    };
    Some((role, binding))
}

/// The ClusterRole (and binding) of `placement.enabled`.
pub const PLACEMENT_WATCHER: &str = "nemutator-placement";

/// `list` and `watch` on pods (the watch of the pods labelled noisy), only
/// with `placement.enabled`.
pub(super) fn placement_watcher(o: &InstallOptions) -> Option<(ClusterRole, ClusterRoleBinding)> {
    if !o.config.placement.enabled {
        return None;
    }
    let role = ClusterRole {
        metadata: meta(PLACEMENT_WATCHER, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".to_owned()]),
            verbs: vec!["list".to_owned(), "watch".to_owned()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(PLACEMENT_WATCHER, None),
        role_ref: cluster_role_ref(PLACEMENT_WATCHER),
        subjects: Some(vec![subject(o)]),
    };
    Some((role, binding))
}

fn subject(o: &InstallOptions) -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: NAME.to_owned(),
        namespace: Some(o.namespace.clone()),
        ..Subject::default()
    }
}

fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: "ClusterRole".to_owned(),
        name: name.to_owned(),
    }
}

/// With Vault's Kubernetes auth, Vault reviews each login token through the
/// TokenReview API with a reviewer's token; nemutator's service account is
/// made one (`system:auth-delegator`), so its token can be Vault's
/// `token_reviewer_jwt` (docs/SECRETS.md).
pub(super) fn token_reviewer(o: &InstallOptions) -> Option<ClusterRoleBinding> {
    if !o.config.secrets.kubernetes_auth() {
        return None;
    }
    Some(ClusterRoleBinding {
        metadata: meta(&format!("{NAME}-auth-delegator"), None),
        role_ref: cluster_role_ref("system:auth-delegator"),
        subjects: Some(vec![subject(o)]),
    })
}

/// `get` on Secrets in every namespace (pull secrets are in the pods'),
/// only with `secrets.registry.pull_secrets`.
pub(super) fn pull_secrets(o: &InstallOptions) -> Option<(ClusterRole, ClusterRoleBinding)> {
    let r = &o.config.secrets.registry;
    if !(o.config.secrets.enabled && r.lookup && r.pull_secrets) {
        return None;
    }
    let name = format!("{NAME}-pull-secrets");
    let role = ClusterRole {
        metadata: meta(&name, None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".to_owned()]),
            verbs: vec!["get".to_owned()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    };
    let binding = ClusterRoleBinding {
        metadata: meta(&name, None),
        role_ref: cluster_role_ref(&name),
        subjects: Some(vec![subject(o)]),
    };
    Some((role, binding))
}

pub(super) fn config_map(o: &InstallOptions) -> ConfigMap {
    ConfigMap {
        metadata: meta(NAME, Some(&o.namespace)),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_owned(),
            o.config_yaml.clone(),
        )])),
        ..ConfigMap::default()
    }
}

pub(super) fn tls_secret(o: &InstallOptions, tls: &Tls) -> Option<Secret> {
    let Tls::Generated(certs) = tls else {
        return None;
    };
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Some(Secret {
        metadata: meta(TLS_SECRET, Some(&o.namespace)),
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(BTreeMap::from([
            ("ca.crt".to_owned(), bytes(&certs.ca_cert)),
            ("tls.crt".to_owned(), bytes(&certs.tls_cert)),
            ("tls.key".to_owned(), bytes(&certs.tls_key)),
        ])),
        ..Secret::default()
    })
}

/// A self-signed Issuer and the serving Certificate, for `--cert-manager`.
pub(super) fn cert_manager(o: &InstallOptions, tls: &Tls) -> Option<(Issuer, Certificate)> {
    if !matches!(tls, Tls::CertManager) {
        return None;
    }
    let issuer_name = format!("{NAME}-selfsigned");
    let issuer = Issuer {
        api_version: api_version(),
        metadata: meta(&issuer_name, Some(&o.namespace)),
        spec: IssuerSpec::self_signed(),
    };
    let certificate = Certificate {
        api_version: api_version(),
        metadata: meta(TLS_SECRET, Some(&o.namespace)),
        spec: CertificateSpec {
            secret_name: TLS_SECRET.to_owned(),
            dns_names: o.dns_names(),
            ip_addresses: None,
            issuer_ref: IssuerRef {
                name: issuer_name,
                kind: "Issuer".to_owned(),
            },
        },
    };
    Some((issuer, certificate))
}

pub(super) fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

pub(super) fn https_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("https".to_owned()),
            scheme: Some("HTTPS".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

pub(super) fn spread(key: &str, selector: BTreeMap<String, String>) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        // A single-node or single-zone cluster still runs both replicas.
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(selector),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }
}

pub(super) fn container(o: &InstallOptions) -> Container {
    let tls = format!("{TLS_DIR}/tls");
    Container {
        name: "webhook".to_owned(),
        image: Some(o.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "webhook".to_owned(),
            format!("--listen=0.0.0.0:{CONTAINER_PORT}"),
            format!("--tls-cert={tls}.crt"),
            format!("--tls-key={tls}.key"),
            format!("--config={CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        env: Some(vec![
            EnvVar {
                name: "NEMUTATOR_LOG_FORMAT".to_owned(),
                value: Some("json".to_owned()),
                ..EnvVar::default()
            },
            // The init container of exec injection runs the same image.
            EnvVar {
                name: IMAGE_ENV.to_owned(),
                value: Some(o.image.clone()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("https".to_owned()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(https_probe("/readyz", 5, 3)),
        liveness_probe: Some(https_probe("/healthz", 10, 3)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
            limits: Some(quantities(&[("memory", "256Mi")])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "tls".to_owned(),
                mount_path: TLS_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".to_owned(),
                mount_path: CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

pub(super) fn deployment(o: &InstallOptions) -> Deployment {
    let mut template_meta = ObjectMeta {
        labels: Some(labels()),
        annotations: Some(BTreeMap::from([(
            CONFIG_DIGEST_ANNOTATION.to_owned(),
            o.config_digest(),
        )])),
        ..ObjectMeta::default()
    };
    template_meta
        .labels
        .get_or_insert_with(BTreeMap::new)
        // The webhook's own pods are never sent to it (its namespace is
        // excluded too; this holds if someone moves them).
        .insert(annotations::RESOURCES.to_owned(), OPT_OUT_VALUE.to_owned());
    Deployment {
        metadata: meta(NAME, Some(&o.namespace)),
        spec: Some(DeploymentSpec {
            replicas: Some(o.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    service_account_name: Some(NAME.to_owned()),
                    automount_service_account_token: Some(token_needed(o)),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container(o)],
                    topology_spread_constraints: Some(vec![
                        spread("kubernetes.io/hostname", selector_labels()),
                        spread("topology.kubernetes.io/zone", selector_labels()),
                    ]),
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(vec![
                        Volume {
                            name: "tls".to_owned(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(TLS_SECRET.to_owned()),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: NAME.to_owned(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub(super) fn pod_disruption_budget(o: &InstallOptions) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(NAME, Some(&o.namespace)),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

pub(super) fn service(o: &InstallOptions) -> Service {
    Service {
        metadata: meta(NAME, Some(&o.namespace)),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("https".to_owned()),
                port: 443,
                target_port: Some(IntOrString::String("https".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub(super) fn webhook_configuration(o: &InstallOptions, tls: &Tls) -> MutatingWebhookConfiguration {
    let mut metadata = meta(NAME, None);
    let ca_bundle = match tls {
        Tls::Generated(certs) => Some(ByteString(certs.ca_cert.as_bytes().to_vec())),
        Tls::CertManager => {
            metadata.annotations = Some(BTreeMap::from([(
                "cert-manager.io/inject-ca-from".to_owned(),
                format!("{}/{TLS_SECRET}", o.namespace),
            )]));
            None
        }
    };
    let client_config = match &o.webhook_url {
        Some(url) => WebhookClientConfig {
            url: Some(url.clone()),
            ca_bundle,
            service: None,
        },
        None => WebhookClientConfig {
            url: None,
            ca_bundle,
            service: Some(ServiceReference {
                name: NAME.to_owned(),
                namespace: o.namespace.clone(),
                path: Some("/mutate".to_owned()),
                port: Some(443),
            }),
        },
    };
    let not_in = |key: &str, values: Vec<String>| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(values),
        }]),
        ..LabelSelector::default()
    };
    MutatingWebhookConfiguration {
        metadata,
        webhooks: Some(vec![MutatingWebhook {
            name: "pods.nemutator.io".to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config,
            // An outage of nemutator never blocks pod creation.
            failure_policy: Some("Ignore".to_owned()),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(super::WEBHOOK_TIMEOUT_SECONDS),
            reinvocation_policy: Some("IfNeeded".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned()]),
                resources: Some(vec!["pods".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            namespace_selector: Some(not_in(
                "kubernetes.io/metadata.name",
                vec!["kube-system".to_owned(), o.namespace.clone()],
            )),
            object_selector: Some(not_in(
                annotations::RESOURCES,
                vec![OPT_OUT_VALUE.to_owned()],
            )),
            ..MutatingWebhook::default()
        }]),
    }
}
