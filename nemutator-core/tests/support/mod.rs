//! Test-only mutation layers shared by `tests/mutation.rs` and
//! `tests/mutation_e2e.rs`: [`InjectLayer`] does to a pod what secret
//! injection in `exec` mode does (an init container copying a binary into an
//! in-memory `emptyDir`, a mount of it, an env var and the command rewritten
//! to run through the binary), [`DownLayer`] reports an unreachable backend.

#![allow(dead_code)] // each test binary uses a part

use std::task::{Context, Poll};

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, EnvVar, Volume, VolumeMount};
use nemutator_core::mutate::{ContainerView, Extra, MutationError, PodReview};
use serde_json::json;
use tower::{Layer, Service};

/// The volume, init container and mount path [`InjectLayer`] adds.
pub const VOLUME: &str = "nemutator-bin";
pub const INIT: &str = "nemutator-init";
pub const DIR: &str = "/nemutator-bin";
pub const BINARY: &str = "/nemutator-bin/nemutator";
pub const ENV: &str = "NEMUTATOR_INJECTED";

/// The init container [`InjectLayer`] adds, whole: fields the view models
/// and one it does not (`securityContext`, through [`Extra`]).
pub fn mk_init_container() -> ContainerView {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "securityContext".into(),
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
    );
    ContainerView {
        name: INIT.into(),
        image: Some("nemutator:test".into()),
        command: Some(vec!["cp".into(), "/nemutator".into(), BINARY.into()]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME.into(),
            mount_path: DIR.into(),
            ..VolumeMount::default()
        }]),
        extra: Extra(extra),
        ..ContainerView::default()
    }
}

/// Injects into every container that has a `command`; idempotent (a pod it
/// already changed is left as it is), as `reinvocationPolicy: IfNeeded`
/// requires.
#[derive(Clone, Debug, Default)]
pub struct InjectLayer;

impl<S> Layer<S> for InjectLayer {
    type Service = Inject<S>;

    fn layer(&self, inner: S) -> Inject<S> {
        Inject { inner }
    }
}

/// The service of [`InjectLayer`].
#[derive(Clone, Debug)]
pub struct Inject<S> {
    inner: S,
}

fn inject(review: &mut PodReview) {
    let Some(spec) = review.pod.spec.as_mut() else {
        return;
    };
    let mut touched = false;
    for c in &mut spec.containers {
        let Some(command) = c.command.as_mut() else {
            continue;
        };
        touched = true;
        if command.first().map(String::as_str) != Some(BINARY) {
            let mut wrapped = vec![BINARY.to_string(), "env".into(), "--".into()];
            wrapped.append(command);
            wrapped.extend(c.args.take().unwrap_or_default());
            *command = wrapped;
        }
        let env = c.env.get_or_insert_with(Vec::new);
        if !env.iter().any(|e| e.name == ENV) {
            env.push(EnvVar {
                name: ENV.into(),
                value: Some("1".into()),
                value_from: None,
            });
        }
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.mount_path == DIR) {
            mounts.push(VolumeMount {
                name: VOLUME.into(),
                mount_path: DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
    }
    if !touched {
        return;
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == VOLUME) {
        volumes.push(Volume {
            name: VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: None,
            }),
            ..Volume::default()
        });
    }
    // First, so that the binary is in place before any other init container.
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    if !init.iter().any(|c| c.name == INIT) {
        init.insert(0, mk_init_container());
    }
}

impl<S> Service<PodReview> for Inject<S>
where
    S: Service<PodReview, Response = PodReview, Error = MutationError>,
{
    type Response = PodReview;
    type Error = MutationError;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut review: PodReview) -> Self::Future {
        inject(&mut review);
        self.inner.call(review)
    }
}

/// The label that makes [`DownLayer`] report its backend unreachable.
pub const DOWN_LABEL: &str = "e2e.nemutator.io/backend";

/// Reports [`MutationError::Unavailable`] for pods labelled
/// `e2e.nemutator.io/backend: down`, as a layer does whose backend (a
/// secret store, a registry) does not answer.
#[derive(Clone, Debug, Default)]
pub struct DownLayer;

impl<S> Layer<S> for DownLayer {
    type Service = Down<S>;

    fn layer(&self, inner: S) -> Down<S> {
        Down { inner }
    }
}

/// The service of [`DownLayer`].
#[derive(Clone, Debug)]
pub struct Down<S> {
    inner: S,
}

impl<S> Service<PodReview> for Down<S>
where
    S: Service<PodReview, Response = PodReview, Error = MutationError>,
    S::Future: Send + 'static,
{
    type Response = PodReview;
    type Error = MutationError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<PodReview, MutationError>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, review: PodReview) -> Self::Future {
        let labels = review.pod.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(DOWN_LABEL)).map(String::as_str) == Some("down") {
            let refused =
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
            return Box::pin(std::future::ready(Err(MutationError::unavailable(
                "secret store at https://127.0.0.1:1",
                refused,
            ))));
        }
        Box::pin(self.inner.call(review))
    }
}
