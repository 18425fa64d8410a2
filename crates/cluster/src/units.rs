//! Durations, rates and sizes as people write them in lab configs and on the command line.
//!
//! Owns the accepted spellings and their error messages; the number crunching is done by
//! well-kept crates: [`humantime`] for durations (`10s`, `500ms`, `2m`, `1h`, `1.5s`) and
//! [`parse_size`] for decimal/binary prefixes (`10m`, `512k`, `1G`).

use std::time::Duration;

use serde_yaml_ng::Value;

use crate::error::LabError;

/// Longest duration a config may name (about 31 years; keeps `Duration` arithmetic safe).
const MAX_DURATION_SECS: f64 = 1e9;
/// Rates are in `1 ..= 10^13` bits per second.
const MAX_RATE_BITS: u64 = 10_000_000_000_000;

/// How a YAML value is shown in messages: strings quoted, other values as YAML.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`, `1m30s`, or a bare number of seconds.
pub fn parse_duration(file: &str, field: &str, v: &Value) -> Result<Duration, LabError> {
    let bad = || {
        LabError::invalid(
            file,
            field,
            format!(
                "{} is not a duration (like 10s, 500ms, 2m or a number of seconds)",
                shown(v)
            ),
        )
    };
    let secs = |x: f64| {
        if x.is_finite() && (0.0..MAX_DURATION_SECS).contains(&x) {
            Ok(Duration::from_secs_f64(x))
        } else {
            Err(bad())
        }
    };
    match v {
        Value::Number(n) => secs(n.as_f64().ok_or_else(bad)?),
        Value::String(s) => {
            let s = s.trim();
            // A bare number is seconds (humantime wants a unit).
            if let Ok(x) = s.parse::<f64>() {
                return secs(x);
            }
            let d = humantime::parse_duration(s).map_err(|_| bad())?;
            secs(d.as_secs_f64())
        }
        _ => Err(bad()),
    }
}

/// `10mbit`, `512kbit`, `1gbit`, `100bit`, `2mbps` (bytes per second), or a bare number of
/// bits per second; prefixes are decimal (tc's `mbit` = 10^6 bit/s).
pub fn parse_rate(file: &str, field: &str, v: &Value) -> Result<u64, LabError> {
    let bad = || {
        LabError::invalid(
            file,
            field,
            format!(
                "{} is not a rate (like 10mbit, 512kbit, 1gbit or bits per second)",
                serde_yaml_ng::to_string(v).unwrap_or_default().trim()
            ),
        )
    };
    let bits = match v {
        Value::Number(n) => {
            let x = n.as_f64().ok_or_else(bad)?;
            if !(x.is_finite() && (1.0..MAX_RATE_BITS as f64).contains(&x)) {
                return Err(bad());
            }
            x as u64
        }
        Value::String(s) => rate_bits(s).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    if (1..MAX_RATE_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(bad())
    }
}

/// Bits per second of a rate string, `None` when it is not one.
fn rate_bits(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, per_unit) = if let Some(x) = s.strip_suffix("bit") {
        (x, 1)
    } else if let Some(x) = s.strip_suffix("bps") {
        (x, 8)
    } else {
        (s.as_str(), 1)
    };
    let decimal = parse_size::Config::new()
        .with_decimal()
        .with_byte_suffix(parse_size::ByteSuffix::Deny);
    decimal.parse_size(num.trim()).ok()?.checked_mul(per_unit)
}

/// A size like `1G`, `512M`, `64K` or `100` (binary units: K = 1024), for `lab up --file`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let bad = |why: &str| SizeError(format!("size {s:?}: {why}"));
    if let Some(c) = t.chars().last().filter(char::is_ascii_alphabetic) {
        if !matches!(c.to_ascii_uppercase(), 'K' | 'M' | 'G') {
            return Err(bad("unit must be K, M or G"));
        }
    }
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a number"));
    }
    let binary = parse_size::Config::new()
        .with_binary()
        .with_byte_suffix(parse_size::ByteSuffix::Deny);
    binary.parse_size(t).map_err(|e| match e {
        parse_size::Error::PosOverflow => SizeError(format!("size {s:?} is too large")),
        _ => bad("not a number"),
    })
}

/// A bad `--file NAME=SIZE` size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SizeError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn dur(s: &str) -> Result<Duration, LabError> {
        parse_duration("f", "x", &Value::String(s.into()))
    }
    fn rate(s: &str) -> Result<u64, LabError> {
        parse_rate("f", "x", &Value::String(s.into()))
    }

    #[test]
    fn durations_keep_every_old_spelling() {
        let ms = |n| Duration::from_millis(n);
        for (s, want) in [
            ("10s", ms(10_000)),
            ("500ms", ms(500)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1.5s", ms(1500)),
            ("0.25", ms(250)),
            ("3", ms(3000)),
            (" 10 s ", ms(10_000)),
            ("1m30s", ms(90_000)),
        ] {
            assert_eq!(dur(s).unwrap(), want, "{s}");
        }
        let n: Value = serde_yaml_ng::from_str("2.5").unwrap();
        assert_eq!(parse_duration("f", "x", &n).unwrap(), ms(2500));
        for s in ["", "ten", "-1s", "10x", "inf", "1e10", "99999999999h"] {
            let e = dur(s).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{s}: {e}");
            assert!(e.starts_with("f: x: "), "{e}");
        }
    }

    #[test]
    fn rates_keep_every_old_spelling() {
        for (s, want) in [
            ("10mbit", 10_000_000),
            ("512kbit", 512_000),
            ("1gbit", 1_000_000_000),
            ("100bit", 100),
            ("2mbps", 16_000_000),
            ("1kbps", 8_000),
            ("1.5mbit", 1_500_000),
            ("10MBIT", 10_000_000),
            ("250000", 250_000),
            (" 10 mbit ", 10_000_000),
        ] {
            assert_eq!(rate(s).unwrap(), want, "{s}");
        }
        for s in [
            "",
            "fast",
            "0bit",
            "-5mbit",
            "10xbit",
            "99999999gbit",
            "mbit",
        ] {
            let e = rate(s).unwrap_err().to_string();
            assert!(e.contains("is not a rate"), "{s}: {e}");
        }
        let n: Value = serde_yaml_ng::from_str("1e20").unwrap();
        assert!(parse_rate("f", "x", &n).is_err());
    }

    #[test]
    fn sizes_are_binary_k_m_g() {
        let sizes = [
            ("1G", 1 << 30),
            ("512m", 512 << 20),
            ("64K", 64 << 10),
            ("100", 100),
        ];
        for (s, want) in sizes {
            assert_eq!(parse_size(s), Ok(want), "{s}");
        }
        for (s, why) in [
            ("1T", "size \"1T\": unit must be K, M or G"),
            ("G", "size \"G\": not a number"),
            ("1.5G", "size \"1.5G\": not a number"),
            ("99999999999G", "size \"99999999999G\" is too large"),
        ] {
            assert_eq!(parse_size(s), Err(SizeError(why.into())), "{s}");
        }
    }
}
