//! The virtual wall clock: a fixed base date plus the world's `now`, formatted the way
//! nginx writes `$time_local` (`07/Dec/2019:16:44:38 +0000`) and HTTP `Date` headers.
//! Calendar arithmetic is jiff's (UTC); the fields are written directly (a test checks them
//! against jiff's `strftime`).

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// 2019-12-07 16:44:38 UTC, the day of the blog post being reproduced (Unix seconds).
pub const DEFAULT_BASE_UNIX: u64 = 1_575_737_078;

/// A wall clock anchored at `base_unix` seconds (UTC) when virtual time is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    pub base_unix: u64,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock {
            base_unix: DEFAULT_BASE_UNIX,
        }
    }
}

impl WallClock {
    /// The UTC date-time at virtual time `now` (whole seconds); past jiff's range (year
    /// 9999) it stays at the last representable second instead of failing.
    fn at(&self, now: Duration) -> Zoned {
        let secs = self.base_unix.saturating_add(now.as_secs());
        let ts = i64::try_from(secs)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .unwrap_or(Timestamp::MAX);
        ts.to_zoned(TimeZone::UTC)
    }

    /// nginx `$time_local` with a UTC zone: `07/Dec/2019:16:44:38 +0000`.
    pub fn time_local(&self, now: Duration) -> String {
        let p = Parts::of(&self.at(now));
        format!("{:02}/{}/{:04}:{} +0000", p.day, p.month, p.year, p.hms)
    }

    /// HTTP `Date`: `Sat, 07 Dec 2019 16:44:38 GMT`.
    pub fn http_date(&self, now: Duration) -> String {
        let p = Parts::of(&self.at(now));
        format!(
            "{}, {:02} {} {:04} {} GMT",
            p.weekday, p.day, p.month, p.year, p.hms
        )
    }
}

/// English day and month abbreviations (strftime's `%a` / `%b` in the C locale), written
/// directly: parsing a strftime pattern twice per request showed in profiles.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The fields both formats print.
struct Parts {
    weekday: &'static str,
    day: i8,
    month: &'static str,
    year: i16,
    hms: Hms,
}

/// `%H:%M:%S`.
struct Hms(i8, i8, i8);

impl std::fmt::Display for Hms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.0, self.1, self.2)
    }
}

impl Parts {
    fn of(t: &Zoned) -> Parts {
        let wd = usize::from(t.weekday().to_monday_zero_offset().unsigned_abs());
        Parts {
            weekday: DAYS[wd % 7],
            day: t.day(),
            month: month_abbr(t.month()),
            year: t.year(),
            hms: Hms(t.hour(), t.minute(), t.second()),
        }
    }
}

/// `%b` of month 1..=12.
fn month_abbr(month: i8) -> &'static str {
    MONTHS[usize::from(month.unsigned_abs().saturating_sub(1)) % 12]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_nginx() {
        let c = WallClock::default();
        assert_eq!(c.time_local(Duration::ZERO), "07/Dec/2019:16:44:38 +0000");
        assert_eq!(c.http_date(Duration::ZERO), "Sat, 07 Dec 2019 16:44:38 GMT");
        assert_eq!(
            c.time_local(Duration::from_secs(86_400 * 25 + 3600 * 8)),
            "02/Jan/2020:00:44:38 +0000"
        );
        let leap = WallClock {
            base_unix: 951_782_400,
        }; // 2000-02-29
        assert_eq!(
            leap.time_local(Duration::ZERO),
            "29/Feb/2000:00:00:00 +0000"
        );
    }

    /// The direct formatting is strftime's, over every weekday and month of a few years.
    #[test]
    fn same_as_strftime() {
        let c = WallClock::default();
        for k in 0..2000u64 {
            let now = Duration::from_secs(k * 86_400 + k * 3_607);
            let t = c.at(now);
            assert_eq!(
                c.time_local(now),
                t.strftime("%d/%b/%Y:%H:%M:%S %z").to_string()
            );
            assert_eq!(
                c.http_date(now),
                t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
            );
        }
    }

    #[test]
    fn out_of_range_does_not_panic() {
        let far = WallClock {
            base_unix: u64::MAX,
        };
        assert!(far.time_local(Duration::MAX).contains("/Dec/9999:"));
        assert!(far.http_date(Duration::ZERO).ends_with(" GMT"));
    }
}
