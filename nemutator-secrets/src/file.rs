//! The file resolver: a YAML map of path -> key -> value.

use std::collections::BTreeMap;
use std::path::Path;

use nemutator_core::secret::{pick, ResolveFuture, SecretError, SecretRef, SecretResolver};

/// The sample secrets embedded in the crate (`data/secrets.yaml`): the default
/// of `secrets.resolver: file` without a path. Made-up values.
pub const SAMPLE_SECRETS: &str = include_str!("../data/secrets.yaml");

/// Secrets from a YAML map of path -> key -> value. There are no versions: a
/// reference that pins one is resolved from the only data there is only for
/// version 1.
pub struct FileResolver {
    secrets: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    origin: String,
}

impl std::fmt::Debug for FileResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileResolver")
            .field("origin", &self.origin)
            .field("paths", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FileResolver {
    /// The embedded sample.
    pub fn sample() -> Self {
        // The sample is this crate's own file, checked by a test.
        Self::from_yaml(SAMPLE_SECRETS, "the embedded sample secrets").unwrap_or_else(|_| {
            FileResolver {
                secrets: BTreeMap::new(),
                origin: "the embedded sample secrets".into(),
            }
        })
    }

    /// Reads `path`.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError::Config(format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// Parses the YAML text (`origin` names it in errors; a parse error never
    /// quotes the text, which holds values).
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, SecretError> {
        let secrets: BTreeMap<String, serde_json::Map<String, serde_json::Value>> =
            serde_yaml::from_str(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" at line {}", l.line()))
                    .unwrap_or_default();
                SecretError::Config(format!("{origin}: not a map of path -> key -> value{at}"))
            })?;
        Ok(FileResolver {
            secrets,
            origin: origin.to_owned(),
        })
    }
}

impl SecretResolver for FileResolver {
    fn resolve<'a>(&'a self, reference: &'a SecretRef) -> ResolveFuture<'a> {
        Box::pin(async move {
            let path = &reference.path;
            let data = self
                .secrets
                .get(path)
                .ok_or_else(|| SecretError::NotFound(path.clone()))?;
            if reference.version.is_some_and(|v| v != 1) {
                return Err(SecretError::NotFound(reference.to_string()));
            }
            pick(path, &reference.key, data)
        })
    }
}

#[cfg(test)]
mod tests {
    use nemutator_core::secret::ExposeSecret;

    use super::*;

    fn r(text: &str) -> SecretRef {
        SecretRef::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn the_sample_resolves_and_errors_name_the_reference() {
        let f = FileResolver::from_yaml(SAMPLE_SECRETS, "sample").unwrap_or_else(|e| panic!("{e}"));
        let v = f
            .resolve(&r("vault:kv/data/app/db#password"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.expose_secret(), "not-a-real-password");
        assert!(f
            .resolve(&r("vault:kv/data/app/db#password#1"))
            .await
            .is_ok());
        let e = f
            .resolve(&r("vault:kv/data/app/db#password#2"))
            .await
            .expect_err("v2");
        assert!(matches!(e, SecretError::NotFound(_)), "{e}");
        let e = f
            .resolve(&r("vault:kv/data/nope#k"))
            .await
            .expect_err("missing");
        assert_eq!(e.to_string(), "secret kv/data/nope not found");
        let e = f
            .resolve(&r("vault:kv/data/app/db#nope"))
            .await
            .expect_err("key");
        assert!(!e.to_string().contains("not-a-real-password"), "{e}");
    }

    #[test]
    fn a_bad_file_does_not_quote_its_values() {
        let e = FileResolver::from_yaml("kv/data/x: [hunter2]\n", "f.yaml").expect_err("list");
        assert!(e.to_string().contains("f.yaml"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{:?}", FileResolver::sample()).contains("not-a-real-password"));
    }
}
