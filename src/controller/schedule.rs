//! When the next rotation is due: `rotation.every` after the current key was issued (with
//! the per-uid jitter), or the next `rotation.schedule` occurrence in `rotation.timeZone`.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::rotation;
use crate::api::apikey::Rotation;

#[derive(Clone, Debug)]
pub enum Cadence {
    Every(Duration),
    Schedule { cron: Box<Cron>, zone: TimeZone },
}

impl Cadence {
    /// The cadence a spec asks for, or why it is invalid (an InvalidSpec message).
    pub fn from_spec(r: &Rotation) -> Result<Cadence, String> {
        match (&r.every, &r.schedule) {
            (Some(every), None) => Ok(Cadence::Every(every.to_std()?)),
            (None, Some(schedule)) => {
                let fields = schedule.split_whitespace().count();
                if fields != 5 {
                    return Err(format!(
                        "rotation.schedule {schedule:?} has {fields} fields; use 5-field cron (minute hour day-of-month month day-of-week), e.g. \"0 3 * * 1\""
                    ));
                }
                if let Some(hint) = field_error(schedule) {
                    return Err(format!("rotation.schedule {schedule:?}: {hint}"));
                }
                let cron = Cron::from_str(schedule).map_err(|e| {
                    format!("rotation.schedule {schedule:?} is not valid cron: {e}")
                })?;
                let name = r.time_zone.as_deref().unwrap_or("UTC");
                let zone = TimeZone::get(name).map_err(|_| {
                    format!(
                        "rotation.timeZone {name:?} is not an IANA time zone, e.g. Europe/Berlin"
                    )
                })?;
                Ok(Cadence::Schedule {
                    cron: Box::new(cron),
                    zone,
                })
            }
            _ => Err("set exactly one of rotation.every or rotation.schedule".into()),
        }
    }

    /// The shortest time between two rotations this cadence asks for, as far as one can
    /// tell from the next few occurrences (for the warnings about overlap and expiry).
    pub fn shortest_interval(&self, from: Timestamp) -> Option<Duration> {
        match self {
            Cadence::Every(d) => Some(*d),
            Cadence::Schedule { .. } => {
                let mut times = vec![self.next_after(from, "")?];
                for _ in 0..4 {
                    let last = *times.last()?;
                    times.push(self.next_after(last, "")?);
                }
                times
                    .windows(2)
                    .filter_map(|w| Duration::try_from(w[1].duration_since(w[0])).ok())
                    .min()
            }
        }
    }

    /// The rotation interval, where there is one (for the default overlap).
    pub fn every(&self) -> Option<Duration> {
        match self {
            Cadence::Every(d) => Some(*d),
            Cadence::Schedule { .. } => None,
        }
    }

    /// When a key issued at `issued_at` is due for rotation.
    pub fn next_after(&self, issued_at: Timestamp, uid: &str) -> Option<Timestamp> {
        match self {
            Cadence::Every(every) => {
                let wait = *every + rotation::jitter(uid, *every);
                issued_at
                    .checked_add(jiff::SignedDuration::try_from(wait).ok()?)
                    .ok()
            }
            Cadence::Schedule { cron, zone } => cron
                .find_next_occurrence(&issued_at.to_zoned(zone.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
        }
    }
}

/// What is wrong with a field of a 5-field cron expression, in words that say what is
/// valid (the cron parser's own messages do not).
fn field_error(schedule: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let fields: [(&str, u32, u32, &[&str], &str); 5] = [
        ("minute", 0, 59, &[], "0-59"),
        ("hour", 0, 23, &[], "0-23"),
        ("day of month", 1, 31, &[], "1-31"),
        ("month", 1, 12, &MONTHS, "JAN-DEC or 1-12"),
        ("day of week", 0, 7, &DAYS, "MON-SUN or 0-6"),
    ];
    for (value, (what, low, high, names, valid)) in schedule.split_whitespace().zip(fields) {
        let tokens = value
            .split([',', '-', '/'])
            .filter(|t| !t.is_empty() && *t != "*");
        for token in tokens {
            let ok = match token.parse::<u32>() {
                Ok(n) => (low..=high).contains(&n),
                // `?`, `L`, `W` and `#` forms are left to the parser.
                Err(_) => {
                    names.contains(&token.to_ascii_uppercase().as_str())
                        || token.contains(['?', 'L', 'W', '#'])
                }
            };
            if !ok {
                return Some(format!("{what} {token:?} is not valid: use {valid}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::duration::GoDuration;

    fn rotation(every: Option<&str>, schedule: Option<&str>, tz: Option<&str>) -> Rotation {
        Rotation {
            every: every.map(GoDuration::new),
            schedule: schedule.map(String::from),
            time_zone: tz.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn schedules_follow_their_time_zone() {
        let c =
            Cadence::from_spec(&rotation(None, Some("0 3 * * 1"), Some("Europe/Berlin"))).unwrap();
        // Wednesday 2026-11-25 12:00 UTC → Monday 2026-11-30 03:00 in Berlin (02:00 UTC).
        let issued: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_eq!(
            c.next_after(issued, "u").unwrap().to_string(),
            "2026-11-30T02:00:00Z"
        );
        let utc = Cadence::from_spec(&rotation(None, Some("0 3 * * 1"), None)).unwrap();
        assert_eq!(
            utc.next_after(issued, "u").unwrap().to_string(),
            "2026-11-30T03:00:00Z"
        );
        assert_eq!(utc.every(), None);
    }

    #[test]
    fn every_adds_the_jitter() {
        let c = Cadence::from_spec(&rotation(Some("720h"), None, None)).unwrap();
        let issued: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let next = c.next_after(issued, "uid-1").unwrap();
        let late = next.as_second() - issued.as_second() - 720 * 3600;
        assert!((0..=3600).contains(&late), "{late}");
    }

    #[test]
    fn bad_schedules_say_what_to_write() {
        let six = Cadence::from_spec(&rotation(None, Some("0 0 3 * * 1"), None)).unwrap_err();
        assert!(six.contains("5-field cron"), "{six}");
        let bad = Cadence::from_spec(&rotation(None, Some("61 3 * * 1"), None)).unwrap_err();
        assert!(
            bad.contains("minute \"61\" is not valid: use 0-59"),
            "{bad}"
        );
        let day = Cadence::from_spec(&rotation(None, Some("0 3 * * Mnday"), None)).unwrap_err();
        assert!(day.contains("use MON-SUN or 0-6"), "{day}");
        let month = Cadence::from_spec(&rotation(None, Some("0 3 1 Janu *"), None)).unwrap_err();
        assert!(month.contains("use JAN-DEC or 1-12"), "{month}");
        for fine in ["*/15 0-6 1,15 JAN-MAR MON-FRI", "0 3 * * 7", "0 3 L * ?"] {
            assert!(field_error(fine).is_none(), "{fine}");
        }
        let tz = Cadence::from_spec(&rotation(None, Some("0 3 * * 1"), Some("Mars/Olympus")))
            .unwrap_err();
        assert!(tz.contains("not an IANA time zone"), "{tz}");
    }

    #[test]
    fn the_shortest_interval_of_a_schedule() {
        let daily = Cadence::from_spec(&rotation(None, Some("0 3 * * *"), None)).unwrap();
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_eq!(
            daily.shortest_interval(now),
            Some(Duration::from_secs(86_400))
        );
        let weekdays = Cadence::from_spec(&rotation(None, Some("0 3 * * MON,TUE"), None)).unwrap();
        assert_eq!(
            weekdays.shortest_interval(now),
            Some(Duration::from_secs(86_400))
        );
    }

    proptest::proptest! {
        /// Any five fields of the characters the CRD pattern lets through either give a
        /// cadence whose next rotation is later than the last, or an explanation.
        #[test]
        fn cron_fields_give_a_later_time_or_a_reason(
            fields in proptest::collection::vec("[0-9*/,-]{1,6}", 5),
            seconds in 0i64..2_000_000_000,
        ) {
            let schedule = fields.join(" ");
            match Cadence::from_spec(&rotation(None, Some(&schedule), None)) {
                Ok(c) => {
                    let issued = Timestamp::from_second(seconds).unwrap();
                    if let Some(next) = c.next_after(issued, "uid") {
                        proptest::prop_assert!(next > issued, "{schedule}: {next} after {issued}");
                    }
                }
                Err(e) => proptest::prop_assert!(e.starts_with("rotation.schedule"), "{e}"),
            }
        }
    }
}
