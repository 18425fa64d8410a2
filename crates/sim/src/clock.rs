//! The virtual wall clock: a fixed base date plus the world's `now`, formatted the way
//! nginx writes `$time_local` (`07/Dec/2019:16:44:38 +0000`) and HTTP `Date` headers.

use std::time::Duration;

/// 2019-12-07 16:44:38 UTC, the day of the blog post being reproduced (Unix seconds).
pub const DEFAULT_BASE_UNIX: u64 = 1_575_737_078;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

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
    fn parts(&self, now: Duration) -> (i64, u32, u32, u64, u64, u64, usize) {
        let t = self.base_unix + now.as_secs();
        let days = (t / 86_400) as i64;
        let secs = t % 86_400;
        let (y, m, d) = civil_from_days(days);
        (
            y,
            m,
            d,
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            (days % 7) as usize,
        )
    }

    /// nginx `$time_local` with a UTC zone: `07/Dec/2019:16:44:38 +0000`.
    pub fn time_local(&self, now: Duration) -> String {
        let (y, m, d, hh, mm, ss, _) = self.parts(now);
        format!(
            "{d:02}/{}/{y}:{hh:02}:{mm:02}:{ss:02} +0000",
            MONTHS[(m - 1) as usize]
        )
    }

    /// HTTP `Date`: `Sat, 07 Dec 2019 16:44:38 GMT`.
    pub fn http_date(&self, now: Duration) -> String {
        let (y, m, d, hh, mm, ss, wd) = self.parts(now);
        format!(
            "{}, {d:02} {} {y} {hh:02}:{mm:02}:{ss:02} GMT",
            WEEKDAYS[wd],
            MONTHS[(m - 1) as usize]
        )
    }
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
}
