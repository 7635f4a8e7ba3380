//! Wall-clock helpers: microsecond timestamps and run-name dates, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `YYYY_MM_DD-HH_MM_SS_ffffff` (UTC), the suffix of generated run names.
pub(crate) fn run_suffix(micros: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(micros);
    let frac = micros.rem_euclid(1_000_000);
    format!("{y:04}_{m:02}_{d:02}-{hh:02}_{mm:02}_{ss:02}_{frac:06}")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a microsecond Unix timestamp, as the store records
/// run and step start times (`started_at_us`).
pub fn utc_timestamp(micros: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(micros);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// Date and time of day (UTC) of a microsecond Unix timestamp.
fn civil(micros: i64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = micros.div_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    (y, m, d, tod / 3600, (tod / 60) % 60, tod % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        // 2026-11-23T12:05:54.573248Z
        let micros = 1_795_435_554_573_248;
        assert_eq!(run_suffix(micros), "2026_11_23-12_05_54_573248");
        assert_eq!(run_suffix(0), "1970_01_01-00_00_00_000000");
        assert_eq!(utc_timestamp(micros), "2026-11-23 12:05:54");
        assert_eq!(utc_timestamp(-1), "1969-12-31 23:59:59");
    }
}
