//! The objects of `nemutator controller`: its Deployment (two replicas, one
//! leading), its Service (the REST API), its ServiceAccount and RBAC, the
//! rules of which are derived from [`crate::controller::calls::API_CALLS`],
//! the one list of the calls the controller makes, and the PriorityClass of
//! its overprovisioning placeholder pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::objects::{self, CONFIG_DIR, CONFIG_KEY, CONTAINER_PORT, TLS_DIR};
use super::{InstallOptions, CONTROLLER_NAME, NAME};
use crate::controller::calls::{ApiCall, Scope, API_CALLS};
use crate::controller::overprov::{PRIORITY, PRIORITY_CLASS};

/// The controller's replicas: one leads, the other takes over.
pub const CONTROLLER_REPLICAS: i32 = 2;

fn component_labels(all: bool) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), NAME.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "controller".to_owned(),
        ),
    ]);
    if all {
        labels.insert("app.kubernetes.io/part-of".to_owned(), NAME.to_owned());
    }
    labels
}

fn meta(namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(CONTROLLER_NAME.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(component_labels(true)),
        ..ObjectMeta::default()
    }
}

pub(super) fn service_account(o: &InstallOptions) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(Some(&o.namespace)),
        ..ServiceAccount::default()
    }
}

/// The RBAC rules of the calls in `scope`, one rule per resource.
pub fn rules(scope: Scope) -> Vec<PolicyRule> {
    API_CALLS
        .iter()
        .filter(|c| c.scope == scope)
        .map(
            |ApiCall {
                 group,
                 resource,
                 verbs,
                 scope: _,
             }| PolicyRule {
                api_groups: Some(vec![(*group).to_owned()]),
                resources: Some(vec![(*resource).to_owned()]),
                verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
                ..PolicyRule::default()
            },
        )
        .collect()
}

pub(super) fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(None),
        rules: Some(rules(Scope::Cluster)),
        ..ClusterRole::default()
    }
}

fn subjects(o: &InstallOptions) -> Option<Vec<Subject>> {
    Some(vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: CONTROLLER_NAME.to_owned(),
        namespace: Some(o.namespace.clone()),
        ..Subject::default()
    }])
}

pub(super) fn cluster_role_binding(o: &InstallOptions) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: CONTROLLER_NAME.to_owned(),
        },
        subjects: subjects(o),
    }
}

pub(super) fn role(o: &InstallOptions) -> Role {
    Role {
        metadata: meta(Some(&o.namespace)),
        rules: Some(rules(Scope::OwnNamespace)),
    }
}

pub(super) fn role_binding(o: &InstallOptions) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(&o.namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: CONTROLLER_NAME.to_owned(),
        },
        subjects: subjects(o),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The webhook's Deployment made the controller's: the same image, TLS pair,
/// configuration, security settings and probes; its own name, labels,
/// ServiceAccount (with a token: it calls the API) and arguments.
pub(super) fn deployment(o: &InstallOptions) -> Deployment {
    let mut d = objects::deployment(o);
    d.metadata = meta(Some(&o.namespace));
    let Some(spec) = d.spec.as_mut() else {
        return d;
    };
    spec.replicas = Some(CONTROLLER_REPLICAS);
    spec.selector = LabelSelector {
        match_labels: Some(component_labels(false)),
        ..LabelSelector::default()
    };
    if let Some(labels) = spec
        .template
        .metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
    {
        labels.extend(component_labels(true));
    }
    if let Some(pod) = spec.template.spec.as_mut() {
        pod.service_account_name = Some(CONTROLLER_NAME.to_owned());
        pod.automount_service_account_token = Some(true);
        pod.topology_spread_constraints = Some(vec![
            objects::spread("kubernetes.io/hostname", component_labels(false)),
            objects::spread("topology.kubernetes.io/zone", component_labels(false)),
        ]);
        let tls = format!("{TLS_DIR}/tls");
        for c in &mut pod.containers {
            c.name = "controller".to_owned();
            c.args = Some(vec![
                "controller".to_owned(),
                format!("--listen=0.0.0.0:{CONTAINER_PORT}"),
                format!("--tls-cert={tls}.crt"),
                format!("--tls-key={tls}.key"),
                format!("--config={CONFIG_DIR}/{CONFIG_KEY}"),
            ]);
            // The image of exec injection's init container is the webhook's
            // concern, not the controller's.
            let env = c.env.get_or_insert_with(Vec::new);
            env.retain(|e| e.name != super::IMAGE_ENV);
            env.extend([
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
            ]);
        }
    }
    d
}

/// The REST API's Service.
pub(super) fn service(o: &InstallOptions) -> Service {
    let mut s = objects::service(o);
    s.metadata = meta(Some(&o.namespace));
    if let Some(spec) = s.spec.as_mut() {
        spec.selector = Some(component_labels(false));
    }
    s
}

/// The priority of the overprovisioning placeholder pods (below every
/// workload's default of 0: any pending pod preempts them).
pub(super) fn priority_class() -> PriorityClass {
    PriorityClass {
        metadata: ObjectMeta {
            name: Some(PRIORITY_CLASS.to_owned()),
            labels: Some(component_labels(true)),
            ..ObjectMeta::default()
        },
        value: PRIORITY,
        global_default: Some(false),
        description: Some(
            "nemutator's overprovisioning placeholders: preempted by any workload".to_owned(),
        ),
        ..PriorityClass::default()
    }
}
