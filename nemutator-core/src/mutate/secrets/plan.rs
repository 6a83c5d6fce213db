//! Which containers of a pod get which secrets, and whether the pod may have
//! them: a pure function of the pod and `secrets:`, run before anything is
//! resolved or looked up.
//!
//! A pod is in scope when it carries `nemutator.io/secrets` or a container
//! env value starting `vault:`. The containers acted on are those named in
//! `nemutator.io/secrets-containers` (init containers may be named), else
//! every container plus every init container with an inline reference. The
//! annotation's variables go to the named containers, else to every
//! container. Every reference must parse and match the namespace's
//! `allowed_paths`; `env` injection needs the namespace in
//! `env_namespaces`. Any failure is one line for a denial.

use std::collections::BTreeMap;

use super::exec::INIT_CONTAINER;
use crate::annotations;
use crate::mutate::{ContainerView, PodReview};
use crate::secret::{Injection, PathDenied, RefError, SecretRef, SecretsConfig};

/// Why a pod's secrets are refused: one line, naming references and
/// containers, never a value (a reference names one).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `nemutator.io/secrets` is not a JSON object of strings.
    #[error(
        "{}: not a JSON object of variable name to reference: {why}",
        annotations::SECRETS
    )]
    Annotation {
        /// The JSON error.
        why: String,
    },
    /// A variable name of the annotation that cannot be an env var.
    #[error(
        "{}: {name:?} is not an environment variable name",
        annotations::SECRETS
    )]
    VarName {
        /// The name.
        name: String,
    },
    /// A reference that does not parse.
    #[error("{place}")]
    Reference {
        /// `container app: DB_PASSWORD`, or the annotation.
        place: String,
        /// Why.
        #[source]
        source: RefError,
    },
    /// `nemutator.io/secrets-injection` is neither `exec` nor `env`.
    #[error("{}: {value:?} is not exec or env", annotations::SECRETS_INJECTION)]
    Injection {
        /// The value.
        value: String,
    },
    /// `nemutator.io/secrets-containers` names a container the pod lacks.
    #[error(
        "{}: the pod has no container {name:?}",
        annotations::SECRETS_CONTAINERS
    )]
    UnknownContainer {
        /// The name.
        name: String,
    },
    /// A reference outside the namespace's `allowed_paths`.
    #[error("container {container}: {var}")]
    Denied {
        /// The container.
        container: String,
        /// The variable.
        var: String,
        /// The path and namespace.
        #[source]
        source: PathDenied,
    },
    /// `env` injection in a namespace not in `env_namespaces`.
    #[error(
        "container {container}: namespace {namespace} may not use env injection (secrets.env_namespaces); annotate the pod {}: exec to resolve in the container instead",
        annotations::SECRETS_INJECTION
    )]
    EnvNotAllowed {
        /// The first container with secrets.
        container: String,
        /// The pod's namespace.
        namespace: String,
    },
}

/// Where a variable's reference comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// `nemutator.io/secrets`: the variable is set by nemutator.
    Annotation,
    /// The container's own env value.
    Inline,
}

/// A container to act on and its references, variable by variable.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Target {
    /// An init container (else a container).
    pub init: bool,
    /// Its index in its list.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Variable, reference and where it comes from, in the order written.
    pub vars: Vec<(String, SecretRef, Source)>,
}

/// What to do to a pod.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Plan {
    /// `exec` or `env`.
    pub mode: Injection,
    /// The containers to act on (init containers first), each with at least
    /// one reference.
    pub targets: Vec<Target>,
}

fn has_inline(c: &ContainerView) -> bool {
    c.env
        .iter()
        .flatten()
        .any(|e| e.value.as_deref().is_some_and(SecretRef::is_reference))
}

fn valid_var_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('=') && name.chars().all(|c| c.is_ascii_graphic())
}

/// The plan for `review`, `None` when the pod asks for no secrets.
pub(super) fn plan(review: &PodReview, config: &SecretsConfig) -> Result<Option<Plan>, PlanError> {
    let Some(spec) = review.pod.spec.as_ref() else {
        return Ok(None);
    };
    let annotations = review.pod.metadata.annotations.as_ref();
    let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
    let annotation = get(annotations::SECRETS);
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let ours = |c: &&ContainerView| c.name != INIT_CONTAINER;
    if annotation.is_none()
        && !spec.containers.iter().any(has_inline)
        && !init.iter().filter(ours).any(has_inline)
    {
        return Ok(None);
    }

    let mut entries = Vec::new();
    if let Some(text) = annotation {
        let map: BTreeMap<String, String> =
            serde_json::from_str(text).map_err(|e| PlanError::Annotation { why: e.to_string() })?;
        for (var, text) in map {
            if !valid_var_name(&var) {
                return Err(PlanError::VarName { name: var });
            }
            let reference = SecretRef::parse(&text).map_err(|source| PlanError::Reference {
                place: format!("{}: {var}", annotations::SECRETS),
                source,
            })?;
            entries.push((var, reference));
        }
    }
    let mode = match get(annotations::SECRETS_INJECTION).map(str::trim) {
        None | Some("") => config.injection,
        Some("exec") => Injection::Exec,
        Some("env") => Injection::Env,
        Some(other) => {
            return Err(PlanError::Injection {
                value: other.to_owned(),
            })
        }
    };
    let listed: Option<Vec<&str>> = get(annotations::SECRETS_CONTAINERS).map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect()
    });
    if let Some(names) = &listed {
        for name in names {
            let exists = spec
                .containers
                .iter()
                .chain(init.iter().filter(ours))
                .any(|c| c.name == *name);
            if !exists {
                return Err(PlanError::UnknownContainer {
                    name: (*name).to_owned(),
                });
            }
        }
    }

    let mut targets = Vec::new();
    let lists = [(true, init), (false, spec.containers.as_slice())];
    for (is_init, list) in lists {
        for (index, c) in list.iter().enumerate() {
            if c.name == INIT_CONTAINER && is_init {
                continue;
            }
            let (in_scope, gets_entries) = match &listed {
                Some(names) => {
                    let named = names.contains(&c.name.as_str());
                    (named, named)
                }
                None => (!is_init || has_inline(c), !is_init),
            };
            if !in_scope {
                continue;
            }
            let mut vars = Vec::new();
            if gets_entries {
                for (var, reference) in &entries {
                    vars.push((var.clone(), reference.clone(), Source::Annotation));
                }
            }
            for e in c.env.iter().flatten() {
                let Some(text) = e.value.as_deref().filter(|v| SecretRef::is_reference(v)) else {
                    continue;
                };
                if vars.iter().any(|(v, _, _)| *v == e.name) {
                    continue; // the annotation's entry replaces it
                }
                let reference = SecretRef::parse(text).map_err(|source| PlanError::Reference {
                    place: format!("container {}: {}", c.name, e.name),
                    source,
                })?;
                vars.push((e.name.clone(), reference, Source::Inline));
            }
            if !vars.is_empty() {
                targets.push(Target {
                    init: is_init,
                    index,
                    name: c.name.clone(),
                    vars,
                });
            }
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    // Authorisation before anything is resolved or looked up.
    for t in &targets {
        for (var, reference, _) in &t.vars {
            config
                .allowed_paths
                .check(&review.namespace, reference)
                .map_err(|source| PlanError::Denied {
                    container: t.name.clone(),
                    var: var.clone(),
                    source,
                })?;
        }
    }
    if mode == Injection::Env && !config.env_namespaces.contains(&review.namespace) {
        return Err(PlanError::EnvNotAllowed {
            container: targets.first().map(|t| t.name.clone()).unwrap_or_default(),
            namespace: review.namespace.clone(),
        });
    }
    Ok(Some(Plan { mode, targets }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::error::Chain;
    use crate::mutate::PodView;
    use crate::secret::AllowedPaths;

    fn mk_config() -> SecretsConfig {
        SecretsConfig {
            allowed_paths: AllowedPaths(BTreeMap::from([(
                "team-a".to_owned(),
                vec!["kv/data/team-a/*".to_owned()],
            )])),
            env_namespaces: vec!["team-a".to_owned()],
            ..SecretsConfig::default()
        }
    }

    fn mk_review(annotations: serde_json::Value, spec: serde_json::Value) -> PodReview {
        let pod: PodView = serde_json::from_value(json!({
            "metadata": {"namespace": "team-a", "annotations": annotations},
            "spec": spec,
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        PodReview::new("team-a", pod)
    }

    fn two_containers() -> serde_json::Value {
        json!({
            "initContainers": [{"name": "migrate", "env": [{"name": "PW", "value": "vault:kv/data/team-a/db#pw"}]},
                               {"name": "setup"}],
            "containers": [{"name": "app"}, {"name": "proxy", "env": [{"name": "T", "value": "vault:kv/data/team-a/t#k#2"}]}],
        })
    }

    fn names(p: &Plan) -> Vec<(bool, usize, &str, Vec<&str>)> {
        p.targets
            .iter()
            .map(|t| {
                let vars = t.vars.iter().map(|(v, _, _)| v.as_str()).collect();
                (t.init, t.index, t.name.as_str(), vars)
            })
            .collect()
    }

    fn err_line(review: &PodReview, config: &SecretsConfig) -> String {
        let e = plan(review, config).expect_err("denied");
        Chain(&e).to_string()
    }

    #[test]
    fn pods_without_secrets_are_not_in_scope() {
        let r = mk_review(
            json!({"other": "x"}),
            json!({"containers": [{"name": "a", "env": [{"name": "N", "value": "vaults"}]}]}),
        );
        assert_eq!(plan(&r, &mk_config()).ok(), Some(None));
        let r = mk_review(
            json!({annotations::SECRETS: "{}"}),
            json!({"containers": [{"name": "a"}]}),
        );
        assert_eq!(
            plan(&r, &mk_config()).ok(),
            Some(None),
            "an empty object asks for nothing"
        );
    }

    #[test]
    fn annotation_entries_go_to_every_container_inline_ones_stay_where_they_are() {
        let r = mk_review(
            json!({annotations::SECRETS: r#"{"DB":"vault:kv/data/team-a/db#password"}"#}),
            two_containers(),
        );
        let p = plan(&r, &mk_config())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("in scope"));
        assert_eq!(p.mode, Injection::Exec);
        assert_eq!(
            names(&p),
            [
                (true, 0, "migrate", vec!["PW"]),
                (false, 0, "app", vec!["DB"]),
                (false, 1, "proxy", vec!["DB", "T"]),
            ]
        );
        assert_eq!(p.targets[2].vars[1].1.version, Some(2));
        assert_eq!(p.targets[2].vars[1].2, Source::Inline);
    }

    #[test]
    fn a_container_list_narrows_the_scope() {
        let r = mk_review(
            json!({annotations::SECRETS: r#"{"DB":"vault:kv/data/team-a/db#password"}"#,
                   annotations::SECRETS_CONTAINERS: " app, setup ",
                   annotations::SECRETS_INJECTION: "env"}),
            two_containers(),
        );
        let p = plan(&r, &mk_config())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("in scope"));
        assert_eq!(p.mode, Injection::Env);
        assert_eq!(
            names(&p),
            [
                (true, 1, "setup", vec!["DB"]),
                (false, 0, "app", vec!["DB"])
            ]
        );
    }

    #[test]
    fn refusals_are_one_line_naming_the_cause() {
        let c = mk_config();
        let spec = || json!({"containers": [{"name": "app"}]});
        for (annotations, spec, want) in [
            (json!({annotations::SECRETS: "[1]"}), spec(), "nemutator.io/secrets: not a JSON object of variable name to reference: invalid type: sequence"),
            (json!({annotations::SECRETS: r#"{"A=B":"vault:kv/data/team-a/x#k"}"#}), spec(), "nemutator.io/secrets: \"A=B\" is not an environment variable name"),
            (json!({annotations::SECRETS: r#"{"A":"vault:kv/data/team-a/x"}"#}), spec(), "nemutator.io/secrets: A: invalid secret reference \"vault:kv/data/team-a/x\": no #KEY"),
            (json!({annotations::SECRETS: r#"{"A":"vault:kv/data/team-b/x#k"}"#}), spec(), "container app: A: namespace team-a may not reference kv/data/team-b/x; use a path that secrets.allowed_paths gives team-a, or have it added there"),
            (json!({annotations::SECRETS: r#"{"A":"vault:kv/data/team-a/x#k"}"#, annotations::SECRETS_INJECTION: "sidecar"}), spec(), "nemutator.io/secrets-injection: \"sidecar\" is not exec or env"),
            (json!({annotations::SECRETS: r#"{"A":"vault:kv/data/team-a/x#k"}"#, annotations::SECRETS_CONTAINERS: "web"}), spec(), "nemutator.io/secrets-containers: the pod has no container \"web\""),
            (json!({}), json!({"containers": [{"name": "app", "env": [{"name": "X", "value": "vault:kv/data/team-a/x#k#0"}]}]}), "container app: X: invalid secret reference \"vault:kv/data/team-a/x#k#0\": the version must be a whole number from 1"),
        ] {
            let line = err_line(&mk_review(annotations, spec), &c);
            assert!(line.starts_with(want), "{line}\nwant {want}");
            assert!(!line.contains('\n'));
        }
        let mut other_ns = mk_config();
        other_ns.env_namespaces.clear();
        let r = mk_review(
            json!({annotations::SECRETS: r#"{"A":"vault:kv/data/team-a/x#k"}"#, annotations::SECRETS_INJECTION: "env"}),
            spec(),
        );
        assert_eq!(
            err_line(&r, &other_ns),
            "container app: namespace team-a may not use env injection (secrets.env_namespaces); annotate the pod nemutator.io/secrets-injection: exec to resolve in the container instead"
        );
    }

    #[test]
    fn paths_are_checked_before_the_injection_mode() {
        let mut c = mk_config();
        c.env_namespaces.clear();
        c.injection = Injection::Env;
        let r = mk_review(
            json!({annotations::SECRETS: r#"{"A":"vault:kv/data/other#k"}"#}),
            json!({"containers": [{"name": "app"}]}),
        );
        assert!(err_line(&r, &c).contains("may not reference kv/data/other"));
    }
}
