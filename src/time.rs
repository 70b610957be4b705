//! Wall-clock time as the wire wants it: EJSON `{"$date": ms}` for the
//! Rocket.Chat family and ISO-8601 strings for the meeting family.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; serialises as `{"$date": ms}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// ISO-8601 / RFC 3339 in UTC with millisecond precision,
    /// e.g. `2026-03-03T10:36:00.000Z`.
    pub fn to_iso8601(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", sod / 3600, (sod % 3600) / 60, sod % 60)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's well-known `civil_from_days` derivation.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("$date", &self.0)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Millis {
    /// Accepts `{"$date": ms}` (EJSON) and, leniently, a bare number of ms.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match parse_date(&v) {
            Some(m) => Ok(m),
            None => Err(de::Error::custom("expected {\"$date\": <ms>}")),
        }
    }
}

/// Parses an EJSON date (`{"$date": ms}`) or a bare millisecond number.
pub fn parse_date(v: &serde_json::Value) -> Option<Millis> {
    let n = match v {
        serde_json::Value::Object(o) if o.len() == 1 => o.get("$date")?,
        serde_json::Value::Number(_) => v,
        _ => return None,
    };
    if let Some(i) = n.as_i64() {
        return Some(Millis(i));
    }
    let f = n.as_f64()?;
    // 8.64e15 ms is the ECMAScript Date range; anything beyond is not a date.
    (f.is_finite() && f.abs() <= 8.64e15).then_some(Millis(f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_formatting() {
        assert_eq!(Millis(0).to_iso8601(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Millis(1_772_534_160_123).to_iso8601(), "2026-03-03T10:36:00.123Z");
        assert_eq!(Millis(951_782_400_000).to_iso8601(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn ejson_roundtrip() {
        let j = serde_json::to_string(&Millis(42)).unwrap();
        assert_eq!(j, r#"{"$date":42}"#);
        let back: Millis = serde_json::from_str(&j).unwrap();
        assert_eq!(back, Millis(42));
        assert!(parse_date(&serde_json::json!({"$date": 1e300})).is_none());
        assert!(parse_date(&serde_json::json!("x")).is_none());
    }
}
