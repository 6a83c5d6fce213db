//! Values that must never be printed: a bearer token's `Debug` shows nothing
//! of it, and it has no `Display`.

use std::fmt;

/// A bearer token (the agent's, or one for the Kubernetes API).
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token (surrounding whitespace is trimmed).
    pub fn new(token: impl Into<String>) -> Self {
        BearerToken(token.into().trim().to_owned())
    }

    /// The token itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let t = BearerToken::new(" s3cr3t\n");
        assert_eq!(t.expose(), "s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
