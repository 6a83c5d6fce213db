//! # nemutator-core
//!
//! Domain types, traits and the admission pipeline of nemutator, a companion
//! to the Kubernetes scheduler that mutates the lifecycle of pods: it
//! right-sizes requests and limits at admission from real usage history.
//!
//! * [`quantity`], [`units`]: Kubernetes quantities, durations, percentages.
//! * [`workload`]: which workload a pod belongs to.
//! * [`metrics`]: the [`metrics::MetricsSource`] trait.
//! * [`policy`]: policies, brainsets and the pure right-sizing maths.
//! * [`recommend`]: the recommender and the recommendation store.
//! * [`mutate`]: the mutation chain (tower layers over a typed Pod).
//! * [`metadata`]: label and annotation rules, reloaded while running.
//! * [`admission`]: AdmissionReview v1 decoding and JSON Patch responses.
//! * [`season`]: seasons (peak, off-peak).
//! * [`secret`], [`image`]: secret references and resolvers, image commands
//!   (for secret injection).
//! * [`controller`]: the pod cache, leader election, the REST API.
//! * [`evict`]: the [`evict::Evictor`] trait and its safety rules.
//! * [`install`]: the manifests that run nemutator in a cluster.
//! * [`error`]: errors as one line of text.
#![warn(missing_docs)]

pub mod admission;
pub mod annotations;
pub mod config;
pub mod controller;
pub mod error;
pub mod evict;
// Panicking entry points for the `fuzz/` targets: not API, only with the
// `fuzzing` feature (and in this crate's tests, which replay the seeds).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod install;
mod json;
pub mod k8s;
pub mod metadata;
pub mod metrics;
pub mod mutate;
pub mod noisy;
pub mod patch;
pub mod policy;
pub mod profile;
pub mod quantity;
pub mod recommend;
pub mod report;
pub mod season;
pub mod secret;
pub mod server;
pub mod units;
pub mod workload;

pub use k8s_openapi;
pub use kube;

/// The README's example, compiled and run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
