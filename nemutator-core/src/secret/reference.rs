//! `vault:PATH#KEY[#VERSION]`, the reference syntax Bank-Vaults users already
//! write as an environment variable's value.

use std::fmt;

/// What a reference value starts with.
pub const REF_PREFIX: &str = "vault:";

/// A secret reference: the path (mount included, e.g. `kv/data/app/db`), the
/// key inside the secret and an optional pinned version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretRef {
    /// `kv/data/app/db`.
    pub path: String,
    /// `password`.
    pub key: String,
    /// A pinned version (KV v2), else the latest.
    pub version: Option<u64>,
}

/// Why a text is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret reference {text:?}: {why} (want vault:PATH#KEY[#VERSION])")]
pub struct RefError {
    /// The text, which holds no secret value (a reference names one).
    pub text: String,
    /// What is wrong.
    pub why: &'static str,
}

impl SecretRef {
    /// Whether an environment value is meant as a reference (starts with
    /// `vault:`); such a value that does not parse is an error, not a
    /// literal.
    pub fn is_reference(value: &str) -> bool {
        value.starts_with(REF_PREFIX)
    }

    /// Parses `vault:PATH#KEY[#VERSION]`.
    pub fn parse(text: &str) -> Result<Self, RefError> {
        let bad = |why| RefError {
            text: text.to_owned(),
            why,
        };
        let rest = text
            .strip_prefix(REF_PREFIX)
            .ok_or_else(|| bad("no vault: prefix"))?;
        let mut parts = rest.split('#');
        let path = parts.next().unwrap_or_default();
        let key = parts.next().ok_or_else(|| bad("no #KEY"))?;
        let version = parts.next();
        if parts.next().is_some() {
            return Err(bad("more than two '#'"));
        }
        if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
            return Err(bad(
                "the path must be non-empty without a leading or trailing '/'",
            ));
        }
        if path
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("the path has an empty, '.' or '..' segment"));
        }
        let printable = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_graphic() && c != '?' && c != '%')
        };
        if !printable(path) {
            return Err(bad(
                "the path holds spaces, controls, '?', '%' or non-ASCII",
            ));
        }
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad("the key must be non-empty printable ASCII"));
        }
        let version = match version {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 && !v.starts_with('+') => Some(n),
                _ => return Err(bad("the version must be a whole number from 1")),
            },
        };
        Ok(SecretRef {
            path: path.to_owned(),
            key: key.to_owned(),
            version,
        })
    }

    /// The KV v2 mount and the secret's path in it: `kv/data/app/db` is mount
    /// `kv`, path `app/db`; without a `data` segment the first segment is the
    /// mount (`secret/app` is mount `secret`, path `app`).
    pub fn mount_and_path(&self) -> (&str, &str) {
        if let Some(i) = self.path.find("/data/") {
            return (&self.path[..i], &self.path[i + "/data/".len()..]);
        }
        self.path
            .split_once('/')
            .unwrap_or((self.path.as_str(), ""))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REF_PREFIX}{}#{}", self.path, self.key)?;
        if let Some(v) = self.version {
            write!(f, "#{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for SecretRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn mk(path: &str, key: &str, version: Option<u64>) -> SecretRef {
        SecretRef {
            path: path.into(),
            key: key.into(),
            version,
        }
    }

    #[test]
    fn parses_the_bank_vaults_syntax() {
        assert_eq!(
            SecretRef::parse("vault:kv/data/app/db#password"),
            Ok(mk("kv/data/app/db", "password", None))
        );
        assert_eq!(
            SecretRef::parse("vault:secret/data/app#token#3"),
            Ok(mk("secret/data/app", "token", Some(3)))
        );
        for bad in [
            "kv/data/app#k",
            "vault:",
            "vault:kv/data/app",
            "vault:#k",
            "vault:/kv/app#k",
            "vault:kv//app#k",
            "vault:kv/../app#k",
            "vault:kv/app#",
            "vault:kv/app#k#0",
            "vault:kv/app#k#x",
            "vault:kv/app#k#1#2",
            "vault:kv/a b#k",
            "vault:kv/app?x=1#k",
        ] {
            let e = SecretRef::parse(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid secret reference"), "{e}");
        }
    }

    #[test]
    fn mount_and_path_of_kv2_references() {
        assert_eq!(
            mk("kv/data/app/db", "k", None).mount_and_path(),
            ("kv", "app/db")
        );
        assert_eq!(
            mk("team/kv/data/app", "k", None).mount_and_path(),
            ("team/kv", "app")
        );
        assert_eq!(
            mk("secret/app", "k", None).mount_and_path(),
            ("secret", "app")
        );
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(
            path in "[a-z0-9_-]{1,8}(/[a-zA-Z0-9._-]{1,8}){0,4}",
            key in "[A-Za-z0-9_.-]{1,12}",
            version in proptest::option::of(1u64..1_000_000),
        ) {
            prop_assume!(!path.split('/').any(|s| s == "." || s == ".."));
            let r = mk(&path, &key, version);
            prop_assert_eq!(SecretRef::parse(&r.to_string()), Ok(r));
        }

        #[test]
        fn parsing_never_panics(text in "vault:.{0,40}") {
            let _ = SecretRef::parse(&text);
        }
    }
}
