//! Token lifetimes as people write them: `30s`, `15m`, `1h`, `7d`.

use std::time::Duration;

/// Why a lifetime could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lifetime {0:?}: expected a whole number with s, m, h or d (30s, 15m, 1h, 7d)")]
pub struct TtlError(pub String);

/// Reads a lifetime: a whole number followed by `s`, `m`, `h` or `d`
/// (a bare number is seconds). Zero and values past 100 years are refused.
pub fn parse(text: &str) -> Result<Duration, TtlError> {
    let err = || TtlError(text.to_owned());
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(scale).ok_or_else(err)?;
    if secs == 0 || secs > 100 * 365 * 86_400 {
        return Err(err());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        for bad in [
            "",
            "h",
            "1x",
            "1.5h",
            "-1h",
            "0s",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
