//! The in-pod half of `exec` injection (`nemutator env -- CMD`): every
//! environment variable whose value is a reference (`vault:PATH#KEY[#VERSION]`)
//! resolved, the others kept, ready to `exec` the container's command.

use std::collections::BTreeMap;
use std::ffi::OsString;

use nemutator_core::secret::{
    ExposeSecret, RefError, SecretError, SecretRef, SecretResolver, SecretValue,
};

/// Why the environment could not be resolved: one line naming the variable
/// and the reference, never a value.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A value starting `vault:` that is not a reference.
    #[error("{var}")]
    Reference {
        /// The variable.
        var: String,
        /// Why.
        #[source]
        source: RefError,
    },
    /// A reference that did not resolve.
    #[error("{var}")]
    Resolve {
        /// The variable.
        var: String,
        /// Why.
        #[source]
        source: SecretError,
    },
}

/// An environment with references resolved. Its `Debug` names the variables
/// only.
pub struct ResolvedEnv {
    vars: Vec<(OsString, Value)>,
}

enum Value {
    Plain(OsString),
    Secret(SecretValue),
}

impl std::fmt::Debug for ResolvedEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.vars.iter().map(|(k, _)| k).collect();
        f.debug_struct("ResolvedEnv").field("vars", &names).finish()
    }
}

impl ResolvedEnv {
    /// How many values were secrets.
    pub fn secrets(&self) -> usize {
        self.vars
            .iter()
            .filter(|(_, v)| matches!(v, Value::Secret(_)))
            .count()
    }

    /// The variables and values, to hand to the command.
    pub fn iter(&self) -> impl Iterator<Item = (&OsString, std::borrow::Cow<'_, std::ffi::OsStr>)> {
        self.vars.iter().map(|(k, v)| {
            let value = match v {
                Value::Plain(s) => std::borrow::Cow::Borrowed(s.as_os_str()),
                Value::Secret(s) => {
                    std::borrow::Cow::Owned(OsString::from(s.expose_secret().to_owned()))
                }
            };
            (k, value)
        })
    }
}

/// Resolves every reference in `vars` with `resolver`, each distinct
/// reference once, in order of the variables' names; the first failure stops
/// it.
pub async fn resolve_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    resolver: &dyn SecretResolver,
) -> Result<ResolvedEnv, EnvError> {
    let mut out = Vec::new();
    let mut refs: BTreeMap<SecretRef, Option<SecretValue>> = BTreeMap::new();
    let mut pending = Vec::new();
    for (name, value) in vars {
        match value.to_str().filter(|v| SecretRef::is_reference(v)) {
            Some(text) => {
                let reference = SecretRef::parse(text).map_err(|source| EnvError::Reference {
                    var: name.to_string_lossy().into_owned(),
                    source,
                })?;
                refs.insert(reference.clone(), None);
                pending.push((name, reference));
            }
            None => out.push((name, Value::Plain(value))),
        }
    }
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, reference) in &pending {
        if refs.get(reference).is_some_and(Option::is_some) {
            continue;
        }
        let value = resolver
            .resolve(reference)
            .await
            .map_err(|source| EnvError::Resolve {
                var: name.to_string_lossy().into_owned(),
                source,
            })?;
        refs.insert(reference.clone(), Some(value));
    }
    for (name, reference) in pending {
        let value = refs
            .get(&reference)
            .and_then(Option::as_ref)
            .map(|v| SecretValue::from(v.expose_secret().to_owned()));
        if let Some(v) = value {
            out.push((name, Value::Secret(v)));
        }
    }
    Ok(ResolvedEnv { vars: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileResolver;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[tokio::test]
    async fn references_are_resolved_and_the_rest_kept() {
        let env = resolve_env(
            vars(&[
                ("PATH", "/usr/bin"),
                ("DB_PASSWORD", "vault:kv/data/app/db#password"),
                ("DB_USER", "vault:kv/data/app/db#username"),
                ("NOTE", "vaults are old"),
            ]),
            &FileResolver::sample(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.secrets(), 2);
        let got: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        assert_eq!(got["DB_PASSWORD"], "not-a-real-password");
        assert_eq!(got["DB_USER"], "app");
        assert_eq!(got["NOTE"], "vaults are old");
        assert!(!format!("{env:?}").contains("not-a-real-password"));
    }

    #[tokio::test]
    async fn failures_name_the_variable_and_the_reference() {
        let e = resolve_env(
            vars(&[("X", "vault:kv/data/app/db#nope")]),
            &FileResolver::sample(),
        )
        .await
        .expect_err("no key");
        let line = nemutator_core::error::Chain(&e).to_string();
        assert_eq!(line, "X: secret kv/data/app/db has no key \"nope\"");
        let e = resolve_env(
            vars(&[("Y", "vault:kv/data/app/db")]),
            &FileResolver::sample(),
        )
        .await
        .expect_err("bad");
        let line = nemutator_core::error::Chain(&e).to_string();
        assert!(line.starts_with("Y: invalid secret reference"), "{line}");
    }
}
