//! Go durations (`720h`, `1h30m`, `90s`), the format Kubernetes users know from
//! `metav1.Duration`. Parsed by hand: the grammar is one regular expression, and the
//! crates that parse Go durations are unmaintained.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Kept in sync with the schema: kube-apiserver checks the pattern before any CEL rule
/// (and before our parser) sees the value. No `format: duration`: that would accept `30d`.
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    pub fn new(s: &str) -> Self {
        GoDuration(s.to_string())
    }

    pub fn to_std(&self) -> Result<Duration, String> {
        parse(&self.0)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": GO_DURATION_PATTERN,
            "maxLength": super::limits::DURATION,
            "description": "A Go duration, e.g. 720h, 90m or 1h30m (units: ns, us, µs, ms, s, m, h; no days).",
        })
    }
}

/// Parses a Go duration (`1h30m`, `1.5h`, `250ms`).
pub fn parse(s: &str) -> Result<Duration, String> {
    let invalid = || format!("{s:?} is not a Go duration such as 720h, 90m or 1h30m");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (number, tail) = rest.split_at(number_len);
        // Go's grammar: digits, optionally a dot followed by more digits.
        let well_formed = !number.is_empty()
            && !number.starts_with('.')
            && !number.ends_with('.')
            && number.matches('.').count() <= 1;
        if !well_formed {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("720h", 720.0 * 3600.0),
            ("1h30m", 5400.0),
            ("1.5h", 5400.0),
            ("90s", 90.0),
            ("250ms", 0.25),
            ("2m3s", 123.0),
        ];
        for (s, secs) in cases {
            assert!((parse(s).unwrap().as_secs_f64() - secs).abs() < 1e-9, "{s}");
        }
        for bad in ["", "30d", "h", "1", "1h-30m", "1e3h", "1.h"] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
    }

    #[test]
    fn the_pattern_and_the_parser_agree() {
        let re = regex::Regex::new(GO_DURATION_PATTERN).unwrap();
        for s in ["720h", "1h30m", "1.5h", "90s", "30d", "1e3h", "h", "1.h"] {
            assert_eq!(re.is_match(s), parse(s).is_ok(), "{s}");
        }
    }

    proptest::proptest! {
        /// The controller never accepts a duration the CRD's pattern refuses (the schema
        /// is the first line; the parser must not be more lenient than it).
        #[test]
        fn the_parser_is_never_more_lenient_than_the_pattern(s in "[0-9.a-zµ]{0,12}") {
            let re = regex::Regex::new(GO_DURATION_PATTERN).unwrap();
            if parse(&s).is_ok() {
                proptest::prop_assert!(re.is_match(&s), "{s:?} parsed but the schema refuses it");
            }
        }

        /// Whole hours, minutes and seconds add up exactly.
        #[test]
        fn units_add_up(h in 0u64..100_000, m in 0u64..1_000, sec in 0u64..1_000) {
            let d = parse(&format!("{h}h{m}m{sec}s")).unwrap();
            proptest::prop_assert_eq!(d.as_secs(), h * 3600 + m * 60 + sec);
        }

        /// Whatever fits the schema's length parses or says why, without panicking.
        #[test]
        fn anything_the_schema_admits_is_answered(s in "([0-9]{1,20}(\\.[0-9]{1,5})?(ns|us|µs|ms|s|m|h)){1,3}") {
            if let Err(e) = parse(&s) {
                proptest::prop_assert!(e.contains("is not a Go duration"), "{e}");
            }
        }
    }
}
