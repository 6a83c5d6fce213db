//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), as a rule's
//! `selector:` writes them, and the syntax of label keys and values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label selector: every `matchLabels` pair and every requirement of
/// `matchExpressions` must hold (an empty selector selects everything).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// Labels the pod must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One requirement of `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: Operator,
    /// The values (non-empty for `In` and `NotIn`, empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operators of a requirement, spelled as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// The label is set to one of the values.
    In,
    /// The label is absent or set to none of the values.
    NotIn,
    /// The label is set (to anything).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl Selector {
    /// Do the labels `get` looks up satisfy the selector?
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| get(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| {
                let value = get(&r.key);
                let listed = || value.is_some_and(|v| r.values.iter().any(|x| x == v));
                match r.operator {
                    Operator::In => listed(),
                    Operator::NotIn => !listed(),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Check keys, values and the arity of each operator; the reason is one line.
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in &self.match_labels {
            check_key(k).map_err(|e| format!("selector: {e}"))?;
            check_label_value(v).map_err(|e| format!("selector: {e}"))?;
        }
        for r in &self.match_expressions {
            check_key(&r.key).map_err(|e| format!("selector: {e}"))?;
            match (r.operator, r.values.is_empty()) {
                (Operator::In | Operator::NotIn, true) => {
                    return Err(format!(
                        "selector: {:?} on {} needs values",
                        r.operator, r.key
                    ))
                }
                (Operator::Exists | Operator::DoesNotExist, false) => {
                    return Err(format!(
                        "selector: {:?} on {} takes no values",
                        r.operator, r.key
                    ))
                }
                _ => {}
            }
            for v in &r.values {
                check_label_value(v).map_err(|e| format!("selector: {e}"))?;
            }
        }
        Ok(())
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: lowercase, dots between labels, at most 253.
fn is_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// The syntax of a label or annotation key (`[prefix/]name`, as Kubernetes
/// checks it).
pub fn check_key(key: &str) -> Result<(), String> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_subdomain(prefix) && is_name(name),
        None => is_name(key),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid key ([prefix/]name, name at most 63 characters of [A-Za-z0-9_.-])"))
    }
}

/// The syntax of a label value: empty, or at most 63 characters of
/// `[A-Za-z0-9_.-]` beginning and ending with a letter or digit.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_name(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is not valid (at most 63 characters of [A-Za-z0-9_.-])"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_selector(yaml: &str) -> Selector {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_operator_and_match_labels() {
        let s = mk_selector(
            "matchLabels: {app: web}\nmatchExpressions:\n\
             - {key: tier, operator: In, values: [front, back]}\n\
             - {key: env, operator: NotIn, values: [dev]}\n\
             - {key: team, operator: Exists}\n\
             - {key: legacy, operator: DoesNotExist}\n",
        );
        let labels = |pairs: &[(&'static str, &'static str)]| {
            let m: BTreeMap<&str, &str> = pairs.iter().copied().collect();
            move |k: &str| m.get(k).copied()
        };
        let base = [("app", "web"), ("tier", "front"), ("team", "a")];
        assert!(s.matches(labels(&base)));
        assert!(!s.matches(labels(&[("app", "db"), ("tier", "front"), ("team", "a")])));
        assert!(!s.matches(labels(&[("app", "web"), ("tier", "mid"), ("team", "a")])));
        assert!(!s.matches(labels(&[("app", "web"), ("team", "a")])));
        assert!(!s.matches(labels(&[("app", "web"), ("tier", "back")])));
        assert!(!s.matches(labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("team", "a"),
            ("env", "dev")
        ])));
        assert!(s.matches(labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("team", "a"),
            ("env", "prod")
        ])));
        assert!(!s.matches(labels(&[
            ("app", "web"),
            ("tier", "back"),
            ("team", "a"),
            ("legacy", "")
        ])));
        assert!(Selector::default().matches(|_| None));
    }

    #[test]
    fn arity_and_syntax_are_checked() {
        for (yaml, needle) in [
            ("matchExpressions: [{key: a, operator: In}]", "needs values"),
            (
                "matchExpressions: [{key: a, operator: Exists, values: [x]}]",
                "takes no values",
            ),
            ("matchLabels: {\"a b\": x}", "not a valid key"),
            ("matchLabels: {a: \"-x\"}", "not valid"),
        ] {
            let e = mk_selector(yaml).validate().expect_err(yaml);
            assert!(e.contains(needle), "{yaml}: {e}");
        }
        assert!(serde_yaml::from_str::<Selector>("matchLabel: {a: b}").is_err());
        assert!(serde_yaml::from_str::<Selector>(
            "matchExpressions: [{key: a, operator: Like, values: [x]}]"
        )
        .is_err());
    }

    #[test]
    fn keys() {
        for good in ["app", "example.com/team", "a.b-c/x_y.z", "A1"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/x",
            "x/",
            "Example.com/x",
            "-a",
            "a/b/c",
            &"x".repeat(64),
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
