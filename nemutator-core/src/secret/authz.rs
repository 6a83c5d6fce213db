//! `secrets.allowed_paths`: which secret paths each namespace may reference.
//! Checked by the webhook at admission in both injection modes, so a pod can
//! never be given a reference outside its namespace's paths.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SecretRef;

/// Namespace to path patterns: `kv/data/team-a/*` (a trailing `*` matches
/// any rest, `*` alone anything), or an exact path. A namespace not listed
/// may reference nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AllowedPaths(pub BTreeMap<String, Vec<String>>);

/// A reference outside the namespace's allowed paths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "namespace {namespace} may not reference {path}; use a path that secrets.allowed_paths gives {namespace}, or have it added there"
)]
pub struct PathDenied {
    /// The pod's namespace.
    pub namespace: String,
    /// The path it referenced.
    pub path: String,
}

impl AllowedPaths {
    /// Whether `namespace` may reference `reference`.
    pub fn check(&self, namespace: &str, reference: &SecretRef) -> Result<(), PathDenied> {
        let allowed = self
            .0
            .get(namespace)
            .is_some_and(|patterns| patterns.iter().any(|p| matches(p, &reference.path)));
        if allowed {
            Ok(())
        } else {
            Err(PathDenied {
                namespace: namespace.to_owned(),
                path: reference.path.clone(),
            })
        }
    }
}

fn matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_allowed() -> AllowedPaths {
        AllowedPaths(BTreeMap::from([
            (
                "team-a".into(),
                vec!["kv/data/team-a/*".into(), "kv/data/shared/db".into()],
            ),
            ("ops".into(), vec!["*".into()]),
        ]))
    }

    fn r(path: &str) -> SecretRef {
        SecretRef {
            path: path.into(),
            key: "k".into(),
            version: None,
        }
    }

    #[test]
    fn namespaces_reach_only_their_paths() {
        let a = mk_allowed();
        assert!(a.check("team-a", &r("kv/data/team-a/db")).is_ok());
        assert!(a.check("team-a", &r("kv/data/shared/db")).is_ok());
        assert!(a.check("team-a", &r("kv/data/shared/db2")).is_err());
        assert!(a.check("team-a", &r("kv/data/team-b/db")).is_err());
        // A prefix is a prefix of segments written out: team-ab is not team-a/.
        assert!(a.check("team-a", &r("kv/data/team-ab/db")).is_err());
        assert!(a.check("ops", &r("anything/at/all")).is_ok());
        let e = a
            .check("team-b", &r("kv/data/team-a/db"))
            .expect_err("unlisted");
        assert_eq!(
            e.to_string(),
            "namespace team-b may not reference kv/data/team-a/db; use a path that secrets.allowed_paths gives team-b, or have it added there"
        );
    }
}
