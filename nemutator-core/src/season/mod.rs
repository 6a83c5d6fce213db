//! Seasons: peak and off-peak. (The learning model arrives with issue 3.)

use std::fmt;

use serde::{Deserialize, Serialize};

/// Peak or off-peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Season {
    /// The workload's busy season.
    Peak,
    /// Everything else.
    OffPeak,
}

impl Season {
    /// `peak` or `off-peak`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Season::Peak => "peak",
            Season::OffPeak => "off-peak",
        }
    }
}

impl fmt::Display for Season {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
