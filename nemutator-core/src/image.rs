//! What a container runs when its pod spec sets no `command`: the image's
//! `Entrypoint` and `Cmd`, from the image config in its registry. `exec`
//! injection needs it to put `nemutator env` in front of the real command.
//!
//! [`ImageLookup`] is the trait; the OCI distribution backend (with
//! `imagePullSecrets` and a cache by digest) is `nemutator-secrets`'
//! `RegistryLookup`. [`NoLookup`] refuses every lookup (the
//! `secrets.registry.lookup: false` setting).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// The command of an image: `Entrypoint` then `Cmd`, as the image config
/// says (either may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageCommand {
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
}

impl ImageCommand {
    /// What the container runs, as Kubernetes combines it with the pod
    /// spec's `args` (which replace `Cmd`) when `command` is not set.
    pub fn argv(&self, args: Option<&[String]>) -> Vec<String> {
        let mut argv = self.entrypoint.clone();
        argv.extend_from_slice(args.unwrap_or(&self.cmd));
        argv
    }
}

/// One lookup: the image of a container in a namespace, with the names of
/// the pod's `imagePullSecrets` (Secrets in that namespace).
#[derive(Clone, Copy, Debug)]
pub struct ImageQuery<'a> {
    /// The image as written in the pod spec (`nginx:1.27`,
    /// `registry.example:5000/team/app@sha256:...`).
    pub image: &'a str,
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's `imagePullSecrets`.
    pub pull_secrets: &'a [String],
}

/// Why an image's command is not known. One line; never holds a
/// credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Lookups are switched off (`secrets.registry.lookup: false`).
    #[error("image lookups are off (secrets.registry.lookup)")]
    Disabled,
    /// Not an image reference.
    #[error("invalid image reference {0:?}")]
    Reference(String),
    /// No such image or manifest (or not for this platform).
    #[error("image {0} not found in its registry")]
    NotFound(String),
    /// The registry refused the credentials (or their absence).
    #[error("registry refused access to {image}: {why}")]
    Denied {
        /// The image.
        image: String,
        /// What the registry or the pull secret said.
        why: String,
    },
    /// A pull secret could not be used.
    #[error("pull secret {namespace}/{name}: {why}")]
    PullSecret {
        /// The pod's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// Why.
        why: String,
    },
    /// The registry answered something nemutator cannot read (a manifest or
    /// config it does not understand).
    #[error("image {image}: {why}")]
    Registry {
        /// The image.
        image: String,
        /// What.
        why: String,
    },
    /// The image config has neither `Entrypoint` nor `Cmd`.
    #[error("image {0} has no Entrypoint or Cmd")]
    NoCommand(String),
    /// The registry (or the Kubernetes API, for pull secrets) could not be
    /// reached, timed out or failed: not the pod's fault.
    #[error("registry unreachable for {image}: {why}")]
    Unavailable {
        /// The image.
        image: String,
        /// Why.
        why: String,
    },
}

impl ImageError {
    /// Whether the backend, not the pod, is at fault (retrying later may
    /// succeed): an admission error, not a denial.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ImageError::Unavailable { .. })
    }
}

/// A boxed future of a lookup.
pub type ImageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ImageCommand, ImageError>> + Send + 'a>>;

/// Finds the command of an image.
pub trait ImageLookup: Send + Sync + fmt::Debug {
    /// The `Entrypoint` and `Cmd` of `query.image`.
    fn command<'a>(&'a self, query: ImageQuery<'a>) -> ImageFuture<'a>;
}

impl<L: ImageLookup + ?Sized> ImageLookup for std::sync::Arc<L> {
    fn command<'a>(&'a self, query: ImageQuery<'a>) -> ImageFuture<'a> {
        (**self).command(query)
    }
}

/// Refuses every lookup ([`ImageError::Disabled`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLookup;

impl ImageLookup for NoLookup {
    fn command<'a>(&'a self, _: ImageQuery<'a>) -> ImageFuture<'a> {
        Box::pin(std::future::ready(Err(ImageError::Disabled)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_replace_cmd_and_follow_the_entrypoint() {
        let c = ImageCommand {
            entrypoint: vec!["/bin/app".into()],
            cmd: vec!["--serve".into()],
        };
        assert_eq!(c.argv(None), ["/bin/app", "--serve"]);
        assert_eq!(c.argv(Some(&["-v".to_owned()])), ["/bin/app", "-v"]);
        assert_eq!(c.argv(Some(&[])), ["/bin/app"]);
        let e = ImageError::Denied {
            image: "r/x:1".into(),
            why: "401".into(),
        };
        assert_eq!(e.to_string(), "registry refused access to r/x:1: 401");
        assert!(!e.is_unavailable());
    }
}
