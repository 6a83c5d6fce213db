//! `exec` injection: the pod runs its commands through `nemutator env`,
//! which resolves the references inside the pod at start, so the webhook
//! never sees a value.
//!
//! - An init container (nemutator's image, first of all init containers)
//!   copies the `nemutator` binary into an in-memory `emptyDir`
//!   (`nemutator copy-self`), with small requests and a restricted
//!   security context.
//! - Each target container mounts it read-only at [`MOUNT_DIR`]; its command
//!   becomes `[/nemutator/nemutator, env, --, <command>]` (`args` kept as
//!   they are, so the process gets the same argv after `--`); the
//!   annotation's variables are set to their references; and
//!   `NEMUTATOR_VAULT_*` name the Vault of the configuration (overriding
//!   anything the pod set), so that `nemutator env` logs in with the pod's
//!   own service account.
//!
//! Probes and lifecycle hooks are separate processes the kubelet starts:
//! they are left as they are. Every step checks what is already there, so a
//! second review of a patched pod changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::plan::{Plan, Source};
use crate::image::ImageCommand;
use crate::mutate::{ContainerView, Extra, PodSpecView};

/// The init container that copies the binary.
pub const INIT_CONTAINER: &str = "nemutator-init";
/// The in-memory `emptyDir` holding the binary.
pub const VOLUME: &str = "nemutator-bin";
/// Where the volume is mounted, in the init container and the targets.
pub const MOUNT_DIR: &str = "/nemutator";
/// The copied binary, as the targets see it.
pub const BINARY: &str = "/nemutator/nemutator";
/// The Vault CA bundle, written next to the binary when one is configured.
pub const CA_FILE: &str = "/nemutator/vault-ca.pem";
/// Where the binary is in nemutator's image.
pub const IMAGE_BINARY: &str = "/usr/local/bin/nemutator";
/// The init container's variable holding the CA bundle (PEM) to write.
pub const CA_PEM_ENV: &str = "NEMUTATOR_VAULT_CA_PEM";
/// The init container's requests: it copies one file.
pub const INIT_REQUESTS: [(&str, &str); 2] = [("cpu", "10m"), ("memory", "32Mi")];
/// The init container's limits: the copy lands in memory (the `emptyDir`),
/// charged to it while it runs, so the memory limit holds the binary.
pub const INIT_LIMITS: [(&str, &str); 2] = [("cpu", "200m"), ("memory", "64Mi")];

/// What the configuration gives every injected pod.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecSettings {
    /// The init container's image (nemutator's own).
    pub init_image: String,
    /// `NEMUTATOR_VAULT_ADDR`, `_ROLE`, `_AUTH_MOUNT` (and `_CA`), set in
    /// every target; empty with the file resolver.
    pub vault_env: Vec<(String, String)>,
    /// The Vault CA bundle (PEM), written by the init container.
    pub ca_pem: Option<String>,
}

/// Whether `c` already runs through `nemutator env`.
pub(super) fn wrapped(c: &ContainerView) -> bool {
    c.command
        .as_deref()
        .is_some_and(|cmd| cmd.len() >= 3 && cmd[0] == BINARY && cmd[1] == "env" && cmd[2] == "--")
}

/// Whether `c` needs its image's command looked up.
pub(super) fn needs_lookup(c: &ContainerView) -> bool {
    c.command.as_ref().is_none_or(Vec::is_empty)
}

fn set_env(c: &mut ContainerView, name: &str, value: String) {
    let env = c.env.get_or_insert_with(Vec::new);
    match env.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            if e.value.as_deref() != Some(value.as_str()) || e.value_from.is_some() {
                e.value = Some(value);
                e.value_from = None;
            }
        }
        None => env.push(EnvVar {
            name: name.to_owned(),
            value: Some(value),
            value_from: None,
        }),
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// The init container, whole.
pub(super) fn init_container(settings: &ExecSettings) -> ContainerView {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "securityContext".into(),
        json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }),
    );
    extra.insert("imagePullPolicy".into(), json!("IfNotPresent"));
    extra.insert(
        "terminationMessagePolicy".into(),
        json!("FallbackToLogsOnError"),
    );
    ContainerView {
        name: INIT_CONTAINER.to_owned(),
        image: Some(settings.init_image.clone()),
        command: Some(vec![
            IMAGE_BINARY.to_owned(),
            "copy-self".to_owned(),
            MOUNT_DIR.to_owned(),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&INIT_REQUESTS)),
            limits: Some(quantities(&INIT_LIMITS)),
            ..ResourceRequirements::default()
        }),
        env: settings.ca_pem.as_ref().map(|pem| {
            vec![EnvVar {
                name: CA_PEM_ENV.to_owned(),
                value: Some(pem.clone()),
                value_from: None,
            }]
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.to_owned(),
            mount_path: MOUNT_DIR.to_owned(),
            ..VolumeMount::default()
        }]),
        extra: Extra(extra),
        ..ContainerView::default()
    }
}

/// Rewrites one container: command, variables, mount. `image` is its
/// image's command when it sets none.
fn inject(
    c: &mut ContainerView,
    vars: &[(String, String)],
    settings: &ExecSettings,
    image: Option<&ImageCommand>,
) {
    if !wrapped(c) {
        let mut command = vec![BINARY.to_owned(), "env".to_owned(), "--".to_owned()];
        match (image, c.command.take().filter(|c| !c.is_empty())) {
            (_, Some(own)) => command.extend(own),
            (Some(image), None) => {
                command.extend(image.entrypoint.iter().cloned());
                // With `command` set, the image's Cmd no longer applies:
                // carry it over as `args` unless the pod gives its own.
                if c.args.is_none() && !image.cmd.is_empty() {
                    c.args = Some(image.cmd.clone());
                }
            }
            // Not reached: a lookup precedes every container without one.
            (None, None) => {}
        }
        c.command = Some(command);
    }
    for (name, value) in vars {
        set_env(c, name, value.clone());
    }
    for (name, value) in &settings.vault_env {
        set_env(c, name, value.clone());
    }
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts.iter().any(|m| m.mount_path == MOUNT_DIR) {
        mounts.push(VolumeMount {
            name: VOLUME.to_owned(),
            mount_path: MOUNT_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
}

/// Applies `plan` to `spec`; `images[i]` is the command of target `i`'s
/// image where it was looked up.
pub(super) fn apply(
    spec: &mut PodSpecView,
    plan: &Plan,
    settings: &ExecSettings,
    images: &[Option<ImageCommand>],
) {
    for (i, t) in plan.targets.iter().enumerate() {
        let vars: Vec<(String, String)> = t
            .vars
            .iter()
            .filter(|(_, _, source)| *source == Source::Annotation)
            .map(|(name, reference, _)| (name.clone(), reference.to_string()))
            .collect();
        let list = if t.init {
            spec.init_containers.as_deref_mut().unwrap_or_default()
        } else {
            spec.containers.as_mut_slice()
        };
        if let Some(c) = list.get_mut(t.index) {
            inject(c, &vars, settings, images.get(i).and_then(Option::as_ref));
        }
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == VOLUME) {
        volumes.push(Volume {
            name: VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: None,
            }),
            ..Volume::default()
        });
    }
    // First, so that the binary is in place before any other init
    // container (and native sidecar) starts.
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    if !init.iter().any(|c| c.name == INIT_CONTAINER) {
        init.insert(0, init_container(settings));
    }
}
