//! The annotation and label keys of the public contract (prefix `nemutator.io/`).

/// `off`, `dry-run` or `on`: whether nemutator may change a pod's resources.
pub const RESOURCES: &str = "nemutator.io/resources";
/// Written by nemutator: what was changed and why, one line per container.
pub const RESOURCES_APPLIED: &str = "nemutator.io/resources-applied";
/// Written by nemutator: the season whose brainset was applied.
pub const SEASON: &str = "nemutator.io/season";
/// JSON object of env var name to secret reference.
pub const SECRETS: &str = "nemutator.io/secrets";
/// Comma-separated container names that `nemutator.io/secrets` applies to.
pub const SECRETS_CONTAINERS: &str = "nemutator.io/secrets-containers";
/// `exec` or `env`: the injection of this pod's secrets (default:
/// `secrets.injection`; `env` only in `secrets.env_namespaces`).
pub const SECRETS_INJECTION: &str = "nemutator.io/secrets-injection";
/// `off`: the placement layer leaves the pod alone (`on`, the default,
/// where `placement.enabled`).
pub const PLACEMENT: &str = "nemutator.io/placement";
/// Pod label: `precious` marks workloads to protect from noisy neighbours.
pub const TIER: &str = "nemutator.io/tier";
/// Pod label written by nemutator on pods ranked as noisy neighbours.
pub const NOISY: &str = "nemutator.io/noisy";
