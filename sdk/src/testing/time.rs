//! Setting an event's time in native tests: RFC 3339 text to the event's `time` and Unix milliseconds.

use crate::Event;

/// The event at `rfc3339` (e.g. `2026-11-23T22:30:00Z` or `2026-11-23T23:30:00+01:00`):
/// both `time` and `time_unix_ms` are set, as the engine sets them. Panics on text that is
/// not RFC 3339, since it is the test's own.
///
/// ```
/// use herald_sdk::testing::{at, event};
/// use herald_sdk::{Payload, Tick};
/// let tick = Payload::Tick(Tick { schedule: "0 0 8 * * *".into(), rule: "digest".into() });
/// let night = at(event("herald.tick", tick), "2026-11-23T23:30:00+01:00");
/// assert_eq!(night.time, "2026-11-23T22:30:00Z");
/// assert_eq!(night.time_unix_ms, 1_795_473_000_000);
/// ```
pub fn at(mut event: Event, rfc3339: &str) -> Event {
    let ms = unix_ms(rfc3339).unwrap_or_else(|| panic!("{rfc3339:?} is not an RFC 3339 time"));
    event.time_unix_ms = ms;
    event.time = rfc3339_utc(ms);
    event
}

/// Unix milliseconds of `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn unix_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (parts.next()??, parts.next()??, parts.next()??);
    let ms: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let offset = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (oh, om) = zone[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?)
        }
    };
    let valid = (1..=12).contains(&m) && (1..=31).contains(&d) && h < 24 && min < 60 && s < 61;
    let seconds = days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s - offset * 60;
    valid.then_some(seconds * 1000 + ms)
}

/// `2026-11-23T22:30:00Z` (with `.fff` when there are milliseconds).
fn rfc3339_utc(ms: i64) -> String {
    let (seconds, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    match millis {
        0 => format!("{y:04}-{m:02}-{d:02}T{clock}Z"),
        _ => format!("{y:04}-{m:02}-{d:02}T{clock}.{millis:03}Z"),
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_unix_milliseconds() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ms("2026-01-01T00:00:00Z"), Some(1_767_225_600_000));
        assert_eq!(
            unix_ms("2026-01-01T01:00:00.5+01:00"),
            Some(1_767_225_600_500)
        );
        assert_eq!(rfc3339_utc(1_767_225_600_500), "2026-01-01T00:00:00.500Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(unix_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(unix_ms("yesterday"), None);
    }
}
