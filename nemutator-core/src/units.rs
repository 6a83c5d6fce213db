//! Human units used in configuration: durations (`30s`, `5m`, `7d`, `1h30m`)
//! and percentages (`15%`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `30s`, `5m`, `2h`, `7d`, `1w` or a sum such as `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// Why a duration or percentage could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a duration.
    #[error("invalid duration {0:?}: expected e.g. 30s, 5m, 2h, 7d or 1h30m")]
    Duration(String),
    /// Not a percentage.
    #[error("invalid percentage {0:?}: expected e.g. 15%")]
    Percent(String),
}

impl HumanDuration {
    /// Whole seconds.
    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// From seconds.
    pub fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || UnitError::Duration(input.to_string());
        let s = input.trim();
        if s.is_empty() {
            return Err(err());
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let n_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if n_end == 0 {
                return Err(err());
            }
            let n: u64 = rest[..n_end].parse().map_err(|_| err())?;
            rest = &rest[n_end..];
            let u_end = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..u_end] {
                "ms" => 0,
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 604_800,
                _ => return Err(err()),
            };
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
            rest = &rest[u_end..];
        }
        Ok(HumanDuration(Duration::from_secs(total)))
    }
}

impl HumanDuration {
    /// Append the [`Display`](fmt::Display) form to `out` (on the admission
    /// path, without the formatting machinery).
    pub fn push_to(&self, out: &mut String) {
        let mut s = self.0.as_secs();
        if s == 0 {
            out.push_str("0s");
            return;
        }
        for (unit, size) in [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)] {
            if s >= size {
                out.push_str(itoa::Buffer::new().format(s / size));
                out.push(unit);
                s %= size;
            }
        }
    }
}

impl fmt::Display for HumanDuration {
    /// Compound form with the largest units first: `7d`, `1h30m`, `6d23h45m`, `45s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(16);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A percentage such as `15%` (a bare number is read as percent too).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Default)]
pub struct Percent(pub f64);

impl Percent {
    /// As a fraction: `15%` is `0.15`.
    pub fn fraction(self) -> f64 {
        self.0 / 100.0
    }
}

impl FromStr for Percent {
    type Err = UnitError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let n = s.strip_suffix('%').unwrap_or(s).trim();
        match n.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Percent(v)),
            _ => Err(UnitError::Percent(input.to_string())),
        }
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::F(v) if v.is_finite() && v >= 0.0 => Ok(Percent(v)),
            Raw::F(v) => Err(serde::de::Error::custom(format!("invalid percentage {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<HumanDuration>().map(|d| d.as_secs());
        assert_eq!(d("30s"), Ok(30));
        assert_eq!(d("5m"), Ok(300));
        assert_eq!(d("7d"), Ok(604_800));
        assert_eq!(d("1h30m"), Ok(5400));
        assert_eq!(d("2w"), Ok(1_209_600));
        assert!(d("").is_err());
        assert!(d("7").is_err());
        assert!(d("d7").is_err());
        assert!(d("7y").is_err());
        assert!(d("99999999999999999999d").is_err());
    }

    #[test]
    fn duration_display() {
        assert_eq!(HumanDuration::from_secs(604_800).to_string(), "7d");
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        assert_eq!(HumanDuration::from_secs(603_900).to_string(), "6d23h45m");
        assert_eq!(HumanDuration::from_secs(0).to_string(), "0s");
        assert_eq!(HumanDuration::from_secs(45).to_string(), "45s");
    }

    #[test]
    fn percents() {
        assert_eq!("15%".parse::<Percent>().map(|p| p.fraction()), Ok(0.15));
        assert_eq!("0%".parse::<Percent>().map(|p| p.fraction()), Ok(0.0));
        assert!("-5%".parse::<Percent>().is_err());
        assert!("abc".parse::<Percent>().is_err());
        let p: Percent = serde_yaml::from_str("20").unwrap_or_default();
        assert_eq!(p.fraction(), 0.2);
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,16}") {
            let _ = s.parse::<HumanDuration>();
        }

        #[test]
        fn duration_display_round_trips(secs in 0u64..100_000_000) {
            let d = HumanDuration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse::<HumanDuration>(), Ok(d));
        }
    }
}
