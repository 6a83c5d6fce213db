//! The controller side of nemutator (`nemutator controller`): the pod cache
//! the controllers and the REST API read, leader election, the Kubernetes
//! API calls the controller makes (from which its RBAC is derived), the
//! overprovisioning placeholder, the noisy-neighbour loop, the label and
//! annotation patcher and the REST API.

pub mod api;
pub mod cache;
pub mod calls;
pub mod drift;
pub mod labels;
pub mod leader;
pub mod noisy;
pub mod overprov;
pub mod reconcile;
mod run;

pub use run::{start, ControllerError, ControllerOptions};

/// The field manager of every change the controller writes (label and
/// metadata patches, the placeholder's server-side apply).
pub const FIELD_MANAGER: &str = "nemutator-controller";
