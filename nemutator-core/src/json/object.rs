//! Structs decoded from JSON objects only.
//!
//! serde's derive decodes a struct from a map *or* from a sequence of its
//! fields in declaration order, so `["admission.k8s.io/v1",
//! "AdmissionReview", {...}]` would pass for a review and `["u1", ...]` for
//! its request. No Kubernetes object is an array, so every struct decoded
//! from a review takes objects only: it derives `Deserialize` with
//! `#[serde(remote = "Self")]`, which turns the derived decoder into an
//! inherent function, implements [`Fields`] with that function and
//! `Deserialize` with [`object`] (the [`object_only!`] macro writes both for
//! a struct without generics). k8s-openapi's types already take maps only.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::Deserializer;

/// A struct's derived decoder (which also takes a sequence).
pub(crate) trait Fields<'de>: Sized {
    /// Decode from `d`, as the derive does.
    fn from_fields<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Decode `T` from a JSON object only; anything else is the error "invalid
/// type: sequence, expected a JSON object" (or `null`, a string...).
pub(crate) fn object<'de, T: Fields<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_fields(MapAccessDeserializer::new(map))
        }
    }

    d.deserialize_map(ObjectVisitor(PhantomData))
}

/// `Deserialize` through [`object`] (and `Serialize` through the derived
/// function) for structs without generics that derive both with
/// `#[serde(remote = "Self")]`.
macro_rules! object_only {
    ($($ty:ident),+ $(,)?) => {$(
        impl<'de> $crate::json::object::Fields<'de> for $ty {
            fn from_fields<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $ty::deserialize(d)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::json::object::object(d)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $ty::serialize(self, s)
            }
        }
    )+};
}
pub(crate) use object_only;

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(remote = "Self")]
    struct Pair {
        a: u32,
        #[serde(default)]
        b: Option<String>,
    }
    object_only!(Pair);

    #[test]
    fn takes_objects_only() {
        let pair: Result<Pair, _> = serde_json::from_str(r#"{"a": 1, "b": "x"}"#);
        assert_eq!(
            pair.ok(),
            Some(Pair {
                a: 1,
                b: Some("x".into())
            })
        );
        for bad in [r#"[1, "x"]"#, "[1]", "null", "1", r#""a""#] {
            let e = serde_json::from_str::<Pair>(bad)
                .err()
                .map(|e| e.to_string());
            assert!(
                e.as_deref()
                    .is_some_and(|e| e.contains("expected a JSON object")),
                "{bad}: {e:?}"
            );
        }
        let value = serde_json::json!([1, "x"]);
        assert!(serde_json::from_value::<Pair>(value).is_err());
        // What the derive writes is unchanged.
        let text = serde_json::to_string(&Pair { a: 2, b: None }).unwrap_or_default();
        assert_eq!(text, r#"{"a":2,"b":null}"#);
    }
}
