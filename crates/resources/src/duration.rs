//! Durations: protobuf's `{seconds, nanos}` in resources, Go-style strings
//! (`1h`, `30m`, `1h30m`) in cluster templates and messages.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A duration as protobuf's `Duration` renders it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct ProtoDuration {
    #[serde(default)]
    pub seconds: i64,
    #[serde(default)]
    pub nanos: i32,
}

impl ProtoDuration {
    pub fn from_std(d: std::time::Duration) -> Self {
        ProtoDuration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }

    /// The duration as `std`, or `None` when negative.
    pub fn to_std(&self) -> Option<std::time::Duration> {
        if self.seconds < 0 || self.nanos < 0 {
            return None;
        }
        Some(std::time::Duration::new(
            self.seconds as u64,
            self.nanos as u32,
        ))
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty")]
    Empty(String),
    #[error("invalid duration {0:?}: expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 1h30m")]
    Syntax(String),
    #[error("invalid duration {0:?}: out of range")]
    Overflow(String),
}

/// Parses a Go-style duration such as `1h`, `1h30m`, `90s`, `1.5h`, `250ms`.
/// Negative durations are rejected: nothing here may run backwards.
pub fn parse_go_duration(input: &str) -> Result<std::time::Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty(input.to_string()));
    }
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::Syntax(input.to_string()))?;
        if num_len == 0 {
            return Err(DurationError::Syntax(input.to_string()));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(DurationError::Syntax(input.to_string())),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return Err(DurationError::Syntax(input.to_string()));
        }
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part
                .parse()
                .map_err(|_| DurationError::Overflow(input.to_string()))?
        };
        let mut nanos = int
            .checked_mul(unit_nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        if !frac_part.is_empty() {
            let digits = frac_part.len().min(18) as u32;
            let frac: u128 = frac_part[..digits as usize]
                .parse()
                .map_err(|_| DurationError::Syntax(input.to_string()))?;
            nanos += frac * unit_nanos / 10u128.pow(digits);
        }
        total = total
            .checked_add(nanos)
            .ok_or_else(|| DurationError::Overflow(input.to_string()))?;
        rest = next;
    }
    // Go's time.Duration is an int64 of nanoseconds; stay within it.
    if total > i64::MAX as u128 {
        return Err(DurationError::Overflow(input.to_string()));
    }
    Ok(std::time::Duration::from_nanos(total as u64))
}

/// Formats like Go's `time.Duration.String()`: `1h0m0s`, `30m0s`, `1.5s`, `250ms`.
pub fn format_go_duration(d: std::time::Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (div, unit) = if nanos < 1_000 {
            (1, "ns")
        } else if nanos < 1_000_000 {
            (1_000, "µs")
        } else {
            (1_000_000, "ms")
        };
        return format!("{}{}", trim_fraction(nanos, div), unit);
    }
    let secs_total = d.as_secs();
    let h = secs_total / 3600;
    let m = (secs_total % 3600) / 60;
    let s_nanos = nanos % 60_000_000_000;
    let s = trim_fraction(s_nanos, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn trim_fraction(value: u128, div: u128) -> String {
    let int = value / div;
    let frac = value % div;
    if frac == 0 {
        return int.to_string();
    }
    let width = div.to_string().len() - 1;
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(parse_go_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "h",
            "1",
            "1x",
            "-1h",
            "1h-",
            "1..5h",
            "99999999999999999999h",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(1800)), "30m0s");
        assert_eq!(format_go_duration(Duration::from_secs(86400)), "24h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }
}
