//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1e3`).
//!
//! A [`Quantity`] is held exactly as an integer number of milli-units, which is
//! the precision Kubernetes itself keeps for CPU and more than enough for
//! memory (bytes). Values finer than a milli-unit are rounded up, as the API
//! server does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest accepted quantity, in milli-units (about 9.2e15 units: more than 8 EiB).
const MAX_MILLIS: i128 = i64::MAX as i128;

/// An exact, non-negative resource quantity in milli-units.
///
/// For CPU the unit is a core (so `millis` are millicores); for memory the unit
/// is a byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    millis: i64,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string was empty.
    #[error("empty quantity")]
    Empty,
    /// The number part could not be read.
    #[error("invalid quantity {0:?}: expected a number with an optional suffix such as 250m, 1.5 or 512Mi")]
    Syntax(String),
    /// The suffix is not one Kubernetes knows.
    #[error("invalid quantity {0:?}: unknown suffix")]
    Suffix(String),
    /// Negative quantities make no sense for requests and limits.
    #[error("invalid quantity {0:?}: negative")]
    Negative(String),
    /// The value does not fit.
    #[error("invalid quantity {0:?}: too large")]
    TooLarge(String),
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity { millis: 0 };

    /// A quantity of `millis` milli-units (negative values become zero).
    pub const fn from_millis(millis: i64) -> Self {
        Quantity {
            millis: if millis < 0 { 0 } else { millis },
        }
    }

    /// A whole number of units (cores, bytes).
    pub fn from_units(units: i64) -> Self {
        Quantity::from_millis(units.saturating_mul(1000))
    }

    /// From a float number of units, rounded up to the next milli-unit.
    /// NaN and negative values give zero; huge values saturate.
    pub fn from_f64_units(units: f64) -> Self {
        if !units.is_finite() || units <= 0.0 {
            return if units == f64::INFINITY {
                Quantity { millis: i64::MAX }
            } else {
                Quantity::ZERO
            };
        }
        let m = (units * 1000.0).ceil();
        if m >= i64::MAX as f64 {
            Quantity { millis: i64::MAX }
        } else {
            Quantity { millis: m as i64 }
        }
    }

    /// Milli-units.
    pub const fn millis(self) -> i64 {
        self.millis
    }

    /// Units as a float (cores, bytes).
    pub fn as_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// Round up to a multiple of `step` milli-units (no-op for a zero step).
    pub fn round_up_to(self, step: i64) -> Self {
        if step <= 0 {
            return self;
        }
        let r = self.millis % step;
        if r == 0 {
            self
        } else {
            Quantity {
                millis: self.millis.saturating_add(step - r),
            }
        }
    }

    /// Parse a Kubernetes quantity.
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        s.parse()
    }

    /// Format as CPU: whole cores when exact (`2`), else millicores (`250m`).
    pub fn to_cpu_string(self) -> String {
        let mut s = String::with_capacity(8);
        self.write_cpu(&mut s);
        s
    }

    /// Append the CPU form ([`Quantity::to_cpu_string`]) to `out`.
    pub fn write_cpu(self, out: &mut String) {
        let mut digits = itoa::Buffer::new();
        if self.millis % 1000 == 0 {
            out.push_str(digits.format(self.millis / 1000));
        } else {
            out.push_str(digits.format(self.millis));
            out.push('m');
        }
    }

    /// Format as memory: the largest binary suffix that is exact (`640Mi`,
    /// `1Gi`), else bytes (rounded up to a whole byte).
    pub fn to_memory_string(self) -> String {
        let mut s = String::with_capacity(8);
        self.write_memory(&mut s);
        s
    }

    /// Append the memory form ([`Quantity::to_memory_string`]) to `out`.
    pub fn write_memory(self, out: &mut String) {
        let bytes = self.millis / 1000 + i64::from(self.millis % 1000 != 0);
        const UNITS: [(&str, i64); 6] = [
            ("Ei", 1 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ];
        let mut digits = itoa::Buffer::new();
        for (suffix, size) in UNITS {
            if bytes >= size && bytes % size == 0 {
                out.push_str(digits.format(bytes / size));
                out.push_str(suffix);
                return;
            }
        }
        out.push_str(digits.format(bytes));
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match parse_plain(input.trim()) {
            Some(q) => Ok(q),
            None => parse_any(input),
        }
    }
}

/// The forms requests and limits almost always take (`500m`, `2`, `512Mi`):
/// up to 15 digits and a common suffix, in 64-bit arithmetic. `None` for
/// anything else, which [`parse_any`] then reads (or rejects).
fn parse_plain(s: &str) -> Option<Quantity> {
    let bytes = s.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 15 {
        return None;
    }
    let n = bytes[..digits]
        .iter()
        .fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
    let scale: i64 = match &s[digits..] {
        "" => 1000,
        "m" => 1,
        "k" => 1_000_000,
        "M" => 1_000_000_000,
        "G" => 1_000_000_000_000,
        "Ki" => 1000 << 10,
        "Mi" => 1000 << 20,
        "Gi" => 1000 << 30,
        "Ti" => 1000 << 40,
        _ => return None,
    };
    n.checked_mul(scale).map(|millis| Quantity { millis })
}

/// Every quantity form Kubernetes accepts: decimal fractions, exponents, all
/// suffixes; exact, with values below a milli-unit rounded up.
fn parse_any(input: &str) -> Result<Quantity, QuantityError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    // Split the number (digits and one dot) from the suffix.
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(QuantityError::Syntax(input.to_string()));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // Mantissa as integer digits with a base-10 exponent (no allocation).
    let mut mantissa: i128 = 0;
    let mut significant = 0usize;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        if significant > 0 || b != b'0' {
            significant += 1;
            if significant > 30 {
                return Err(QuantityError::TooLarge(input.to_string()));
            }
        }
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut binary: i128 = 1;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => binary = 1 << 10,
        "Mi" => binary = 1 << 20,
        "Gi" => binary = 1 << 30,
        "Ti" => binary = 1 << 40,
        "Pi" => binary = 1 << 50,
        "Ei" => binary = 1 << 60,
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..]
                .parse()
                .map_err(|_| QuantityError::Suffix(input.to_string()))?;
            if !(-40..=40).contains(&e) {
                return Err(QuantityError::TooLarge(input.to_string()));
            }
            exp10 += e;
        }
        _ => return Err(QuantityError::Suffix(input.to_string())),
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(input.to_string()));
    }
    // millis = mantissa * binary * 10^(exp10 + 3), rounded up.
    let too_large = || QuantityError::TooLarge(input.to_string());
    let scaled = mantissa.checked_mul(binary).ok_or_else(too_large)?;
    let e = exp10 + 3;
    let millis = if e >= 0 {
        let p = 10i128.checked_pow(e as u32).ok_or_else(too_large)?;
        scaled.checked_mul(p).ok_or_else(too_large)?
    } else if -e > 38 {
        i128::from(scaled > 0)
    } else {
        let p = 10i128.pow((-e) as u32);
        scaled / p + i128::from(scaled % p != 0)
    };
    if millis > MAX_MILLIS {
        return Err(too_large());
    }
    Ok(Quantity {
        millis: millis as i64,
    })
}

impl fmt::Display for Quantity {
    /// Canonical decimal form: `250m`, `2`, or plain units.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 == 0 {
            write!(f, "{}", self.millis / 1000)
        } else {
            write!(f, "{}m", self.millis)
        }
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML gives `8` or `1.5` as numbers; accept both forms.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::I(i) if i >= 0 => Ok(Quantity::from_units(i)),
            Raw::F(x) if x >= 0.0 && x.is_finite() => Ok(Quantity::from_f64_units(x)),
            _ => Err(serde::de::Error::custom("negative or invalid quantity")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_cpu_forms() {
        assert_eq!(q("250m").millis(), 250);
        assert_eq!(q("1.5").millis(), 1500);
        assert_eq!(q("2").millis(), 2000);
        assert_eq!(q("0.1").millis(), 100);
        assert_eq!(q("100000n").millis(), 1);
        assert_eq!(q("1n").millis(), 1, "rounds up below a milli-unit");
        assert_eq!(q("1e3").millis(), 1_000_000);
        assert_eq!(q("1.5e-3").millis(), 2);
    }

    #[test]
    fn parses_memory_forms() {
        assert_eq!(q("512Mi").millis(), 512 * 1024 * 1024 * 1000);
        assert_eq!(q("1Gi").millis(), (1i64 << 30) * 1000);
        assert_eq!(q("1G").millis(), 1_000_000_000_000);
        assert_eq!(q("128974848").millis(), 128_974_848_000);
        assert_eq!(q("129e6").millis(), 129_000_000_000);
        assert_eq!(q("1.5Gi").millis(), (3i64 << 29) * 1000);
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "abc",
            "1.2.3",
            "12Q",
            "-1",
            "1e",
            "Mi",
            "1e999",
            "99999999999999999999Ei",
        ] {
            let err = Quantity::parse(bad).expect_err(bad);
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(q("250m").to_cpu_string(), "250m");
        assert_eq!(q("2").to_cpu_string(), "2");
        assert_eq!(q("640Mi").to_memory_string(), "640Mi");
        assert_eq!(q("1Gi").to_memory_string(), "1Gi");
        assert_eq!(q("1000").to_memory_string(), "1000");
        assert_eq!(q("1536Ki").to_memory_string(), "1536Ki");
    }

    #[test]
    fn round_up_to_step() {
        assert_eq!(Quantity::from_millis(1001).round_up_to(1000).millis(), 2000);
        assert_eq!(Quantity::from_millis(2000).round_up_to(1000).millis(), 2000);
    }

    #[test]
    fn common_forms_take_the_fast_path() {
        for s in [
            "500m",
            "2",
            "0",
            "128Mi",
            "1Gi",
            "64Ki",
            "1k",
            "3G",
            "999999999999999",
        ] {
            assert!(parse_plain(s).is_some(), "{s}");
        }
        for s in [
            "1.5",
            "1e3",
            "100n",
            "1Pi",
            "-1",
            "+1",
            "1000000000000000",
            "9999999999999Ti",
        ] {
            assert!(parse_plain(s).is_none(), "{s}");
        }
    }

    #[test]
    fn yaml_numbers_are_units() {
        let v: Quantity = serde_yaml::from_str("8").unwrap_or_default();
        assert_eq!(v.millis(), 8000);
        let v: Quantity = serde_yaml::from_str("1.5").unwrap_or_default();
        assert_eq!(v.millis(), 1500);
        let v: Quantity = serde_yaml::from_str("\"512Mi\"").unwrap_or_default();
        assert_eq!(v.to_memory_string(), "512Mi");
    }

    proptest! {
        #[test]
        fn plain_forms_read_as_the_general_parser_reads_them(
            s in "[0-9]{1,17}(|m|k|M|G|Ki|Mi|Gi|Ti|Pi|E|n|x)"
        ) {
            if let Some(q) = parse_plain(&s) {
                prop_assert_eq!(Ok(q), parse_any(&s));
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = Quantity::parse(&s);
        }

        #[test]
        fn cpu_format_round_trips(m in 0i64..10_000_000_000) {
            let x = Quantity::from_millis(m);
            prop_assert_eq!(Quantity::parse(&x.to_cpu_string()).ok(), Some(x));
        }

        #[test]
        fn memory_format_round_trips(b in 0i64..(1i64 << 50)) {
            let x = Quantity::from_units(b);
            prop_assert_eq!(Quantity::parse(&x.to_memory_string()).ok(), Some(x));
        }
    }
}
