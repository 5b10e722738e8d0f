//! Time: the clock the domain asks (injected, so tests can move it) and RFC 3339 at the edges.
//!
//! The platform's `expires_at` may carry any offset and fractional seconds; we parse all of
//! that and write UTC with whole seconds, which is what `tokens.json` holds.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Parses RFC 3339 with any offset and fractional seconds; `None` when it is not that, or when
/// the instant falls outside years 1 to 9999 in UTC (what RFC 3339 can write back).
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .ok()?
        .checked_to_offset(UtcOffset::UTC)
        .filter(|t| (1..=9999).contains(&t.year()))
}

/// Formats as RFC 3339 in UTC with whole seconds (`2026-11-22T19:00:00Z`).
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Serde glue: RFC 3339 strings in documents, [`OffsetDateTime`] in memory.
pub mod rfc3339 {
    use super::{format_rfc3339, parse_rfc3339};
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Writes UTC, whole seconds.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    /// Reads any RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }

    /// The same for optional fields.
    pub mod option {
        use super::{format_rfc3339, parse_rfc3339};
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Writes UTC, whole seconds, or null.
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format_rfc3339(*t)),
                None => s.serialize_none(),
            }
        }

        /// Reads any RFC 3339 time or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => parse_rfc3339(&s)
                    .map(Some)
                    .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_fractions() {
        let utc = parse_rfc3339("2026-11-22T19:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-11-22T20:00:00+01:00"), Some(utc));
        assert_eq!(parse_rfc3339("2026-11-22T13:30:00-05:30"), Some(utc));
        let frac = parse_rfc3339("2026-11-22T19:00:00.123456789Z").unwrap();
        assert_eq!(frac.unix_timestamp(), utc.unix_timestamp());
        assert_eq!(parse_rfc3339("2026-11-22t19:00:00z"), Some(utc));
        for bad in [
            "",
            "tomorrow",
            "2026-11-22",
            "2026-11-22 19:00:00",
            "1700000000",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_utc_whole_seconds() {
        let t = parse_rfc3339("2026-11-22T20:00:00.75+01:00").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-22T19:00:00Z");
    }
}
