//! Resource quantities, as apimachinery's `pkg/api/resource/quantity.go` parses, compares and prints
//! them: `500m`, `1.5`, `128Mi`, `1e3`, `2G`.
//!
//! A quantity is held exactly as a count of nano-units (upstream rounds anything finer up to the
//! nano, and caps the magnitude at 2^63-1 units), with the format its suffix chose, which decides how
//! it prints (`String()`, the canonical form upstream's messages show).

use std::cmp::Ordering;

use serde_json::Value;

/// Upstream's `ErrFormatWrong`.
pub const FORMAT_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// Upstream's `ErrSuffix`.
pub const SUFFIX_ERR: &str = "unable to parse quantity's suffix";

const NANO: i128 = 1_000_000_000;
const CAP_NANO: u128 = (i64::MAX as u128) * 1_000_000_000;

/// How a quantity prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `k`, `M`, `m`, … (and no suffix).
    DecimalSI,
    /// `Ki`, `Mi`, ….
    BinarySI,
    /// `e3`, `E-3`, ….
    DecimalExponent,
}

/// A parsed quantity. The default is zero (upstream's zero `Quantity{}`, which prints `0`).
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nano: i128,
    format: Format,
}

impl Default for Quantity {
    fn default() -> Self {
        Quantity {
            nano: 0,
            format: Format::DecimalSI,
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nano == other.nano
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.nano.cmp(&other.nano))
    }
}

/// Parses a quantity string (`resource.ParseQuantity`).
pub fn parse(s: &str) -> Result<Quantity, &'static str> {
    if s.is_empty() {
        return Err(FORMAT_ERR);
    }
    let (positive, num, denom, suffix) = split(s)?;
    let (base, exponent, format) = interpret(suffix).ok_or(SUFFIX_ERR)?;
    let magnitude = magnitude(num, denom, base, exponent) as i128;
    let mut format = format;
    // A fraction of a binary unit prints in decimal (upstream: "avoids rounding").
    if format == Format::BinarySI && magnitude > 0 && magnitude < NANO {
        format = Format::DecimalSI;
    }
    Ok(Quantity {
        nano: if positive { magnitude } else { -magnitude },
        format,
    })
}

/// A quantity as JSON holds it: a string, or a bare number (which upstream's decoder also takes).
pub fn from_json(v: &Value) -> Result<Quantity, &'static str> {
    match v {
        Value::String(s) => parse(s.trim()),
        Value::Number(n) => parse(&n.to_string()),
        _ => Err(FORMAT_ERR),
    }
}

/// `parseQuantityString`: sign, integer digits (leading zeros stripped), fraction digits, suffix.
fn split(s: &str) -> Result<(bool, &str, &str, &str), &'static str> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b[0] {
        b'-' => {
            positive = false;
            pos += 1;
        }
        b'+' => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok((positive, "0", "", ""));
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == start { "0" } else { &s[start..pos] };
    if pos >= end {
        return Ok((positive, num, "", ""));
    }
    let mut denom = "";
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
        if pos >= end {
            return Ok((positive, num, denom, ""));
        }
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(FORMAT_ERR);
    }
    Ok((positive, num, denom, &s[suffix_start..]))
}

/// The suffix's base, exponent and format (`quantitySuffixer.interpret`).
fn interpret(suffix: &str) -> Option<(u32, i64, Format)> {
    let decimal = |e| Some((10, e, Format::DecimalSI));
    let binary = |e| Some((2, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ if suffix.len() > 1 && (suffix.starts_with('e') || suffix.starts_with('E')) => {
            let e: i64 = suffix[1..].parse().ok()?;
            Some((10, e.clamp(-1000, 1000), Format::DecimalExponent))
        }
        _ => None,
    }
}

/// `num.denom × base^exponent` in nano-units, rounded up, capped.
fn magnitude(num: &str, denom: &str, base: u32, exponent: i64) -> u128 {
    let mut digits: Vec<u8> = num.bytes().chain(denom.bytes()).map(|c| c - b'0').collect();
    let first = digits.iter().position(|d| *d != 0).unwrap_or(digits.len());
    digits.drain(..first);
    if digits.is_empty() {
        return 0;
    }
    let mut p10: i64 = 9 - denom.len() as i64 + if base == 10 { exponent } else { 0 };
    let p2: u32 = if base == 2 { exponent as u32 } else { 0 };
    // Keep 36 significant digits; what is dropped only matters for rounding up.
    let mut inexact = false;
    while digits.len() > 36 {
        inexact |= digits.pop() != Some(0);
        p10 += 1;
    }
    let mut m: u128 = digits.iter().fold(0, |acc, d| acc * 10 + *d as u128);
    loop {
        match m.checked_mul(1u128 << p2) {
            Some(v) => {
                m = v;
                break;
            }
            None if p10 < 0 => {
                inexact |= !m.is_multiple_of(10);
                m /= 10;
                p10 += 1;
            }
            None => return CAP_NANO,
        }
    }
    if p10 >= 0 {
        for _ in 0..p10 {
            m = match m.checked_mul(10) {
                Some(v) if v <= CAP_NANO => v,
                _ => return CAP_NANO,
            };
        }
    } else {
        let k = (-p10) as u32;
        if k > 38 {
            return u128::from(m > 0 || inexact);
        }
        let d = 10u128.pow(k);
        m = m / d + u128::from(!m.is_multiple_of(d) || inexact);
    }
    m.min(CAP_NANO)
}

/// `q.Add(y)`: the sum, printed in the format of the first of the two that is not zero (a zero
/// quantity takes the format of what is added to it, as upstream's does).
impl std::ops::Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        let nano = (self.nano + other.nano).clamp(-(CAP_NANO as i128), CAP_NANO as i128);
        let format = if self.nano == 0 { other.format } else { self.format };
        Quantity { nano, format }
    }
}

impl Quantity {
    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nano < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nano == 0
    }

    /// Whether `MilliValue()` (rounded up) is a whole number of units: upstream's test for resources
    /// that must be integers.
    pub fn is_integer(&self) -> bool {
        let milli = self.nano.div_euclid(1_000_000) + i128::from(self.nano.rem_euclid(1_000_000) != 0);
        milli % 1000 == 0
    }

    /// `Value()`: whole units, rounded up.
    pub fn value(&self) -> i128 {
        -(-self.nano).div_euclid(NANO)
    }

    /// `MilliValue()`: thousandths of a unit, rounded up.
    pub fn milli_value(&self) -> i128 {
        -(-self.nano).div_euclid(NANO / 1000)
    }

    /// The canonical form (`Quantity.String()`): `1500m`, `1Gi`, `1e3`, `0`.
    pub fn canonical(&self) -> String {
        if self.nano == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nano.abs() < 1024 * NANO || self.nano % NANO != 0) {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            let mut units = self.nano / NANO;
            let mut e = 0usize;
            while units % 1024 == 0 {
                units /= 1024;
                e += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .get(e)
                .copied()
                .unwrap_or("");
            return format!("{units}{suffix}");
        }
        let mut m = self.nano;
        let mut e: i64 = -9;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        let extra = e.rem_euclid(3);
        m *= 10i128.pow(extra as u32);
        e -= extra;
        let suffix = match (format, e) {
            (_, 0) => String::new(),
            (Format::DecimalSI, -9) => "n".into(),
            (Format::DecimalSI, -6) => "u".into(),
            (Format::DecimalSI, -3) => "m".into(),
            (Format::DecimalSI, 3) => "k".into(),
            (Format::DecimalSI, 6) => "M".into(),
            (Format::DecimalSI, 9) => "G".into(),
            (Format::DecimalSI, 12) => "T".into(),
            (Format::DecimalSI, 15) => "P".into(),
            (Format::DecimalSI, 18) => "E".into(),
            (_, e) => format!("e{e}"),
        };
        format!("{m}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse(s).expect(s)
    }

    #[test]
    fn sums_print_in_the_first_nonzero_format() {
        assert_eq!((q("100m") + q("250m")).canonical(), "350m");
        assert_eq!((q("64Mi") + q("64Mi")).canonical(), "128Mi");
        assert_eq!((Quantity::default() + q("64Mi")).canonical(), "64Mi");
        assert_eq!((q("1") + q("500m")).canonical(), "1500m");
        // A binary sum that is no whole number of Ki prints as plain bytes.
        assert_eq!((q("1Gi") + q("500M")).canonical(), "1573741824");
        assert_eq!(Quantity::default().canonical(), "0");
    }

    #[test]
    fn values_round_up() {
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1500m").milli_value(), 1500);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("2Gi").value(), 2 << 30);
        assert_eq!(q("-1500m").value(), -1);
    }
}
