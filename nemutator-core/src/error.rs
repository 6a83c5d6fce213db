//! Errors as one line of text.
//!
//! Errors of nemutator that wrap another keep it as their `source()` and do
//! not repeat it in their own message (else a chain printed whole, as the
//! binary prints its errors, says it twice). So wherever an error becomes
//! text on its own (a log field, an HTTP answer, a message kept in another
//! error), it is written with [`Chain`], which adds its sources.
//!
//! ```
//! use nemutator_core::error::Chain;
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("reading config.yaml")]
//! struct ReadError(#[source] std::io::Error);
//!
//! let e = ReadError(std::io::Error::other("No such file or directory"));
//! assert_eq!(Chain(&e).to_string(), "reading config.yaml: No such file or directory");
//! ```

use std::error::Error;
use std::fmt;

/// An error and its sources, joined with `": "` (what anyhow's `{:#}`
/// prints), line breaks turned into spaces.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut next: Option<&(dyn Error + 'static)> = Some(self.0);
        let mut first = true;
        while let Some(e) = next {
            if !first {
                f.write_str(": ")?;
            }
            first = false;
            let text = e.to_string();
            for (i, line) in text.lines().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(line)?;
            }
            next = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle\nsecond line")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn joins_the_sources_on_one_line() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        assert_eq!(Chain(&e).to_string(), "outer: middle second line: inner");
        let io = std::io::Error::other("alone");
        assert_eq!(Chain(&io).to_string(), "alone");
    }
}
