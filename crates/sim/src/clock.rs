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
        let t = self.at(now);
        format!(
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day(),
            month_abbr(t.month()),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// HTTP `Date`: `Sat, 07 Dec 2019 16:44:38 GMT`.
    pub fn http_date(&self, now: Duration) -> String {
        let t = self.at(now);
        format!(
            "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
            DAYS[usize::from(t.weekday().to_monday_zero_offset().unsigned_abs()) % 7],
            t.day(),
            month_abbr(t.month()),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// English day and month abbreviations (strftime's `%a` / `%b` in the C locale), written
/// directly: parsing a strftime pattern twice per request showed in profiles.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

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
