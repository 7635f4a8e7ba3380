//! Cache expiry: `#[step(cache_expires = "7d")]`, [`Pipeline::cache_expires`] and
//! [`Pipeline::step_cache_expires`].
//!
//! Expiry is not part of the cache key: an execution older than the step's expiry is a
//! miss, the step executes again under the same key, and its new row is the newest, so it
//! is the one later runs reuse.
//!
//! [`Pipeline::cache_expires`]: crate::Pipeline::cache_expires
//! [`Pipeline::step_cache_expires`]: crate::Pipeline::step_cache_expires

use std::time::Duration;

/// Reads an expiry as `#[step(cache_expires = "..")]` writes it, with the parser retries
/// and timeouts use ([`parse_duration`](crate::policy::parse_duration)): numbers each
/// followed by a unit (`ms`, `s`, `m`, `h`, `d`), e.g. `90s`, `12h`, `7d` or `1d12h`. A
/// `const fn`, so the attribute's text is checked when the step compiles.
///
/// ```
/// use std::time::Duration;
/// use pipeline::parse_expiry;
///
/// assert_eq!(parse_expiry("7d"), Ok(Duration::from_secs(7 * 86_400)));
/// assert_eq!(parse_expiry("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert!(parse_expiry("soon").is_err());
/// ```
///
/// # Errors
///
/// What is wrong with the text, as a sentence: no unit, an unknown unit, or zero.
pub const fn parse_expiry(text: &str) -> Result<Duration, &'static str> {
    match crate::policy::parse_duration(text) {
        Err(_) => Err("a cache expiry is a number and a unit (s, m, h, d), e.g. 7d, 12h or 1d12h"),
        Ok(d) if d.is_zero() => Err("a cache expiry must be more than 0, e.g. 7d"),
        Ok(d) => Ok(d),
    }
}

/// [`parse_expiry`] for a constant: a text that cannot be read stops the build with the
/// problem as the message, at the attribute's literal (what `#[step(cache_expires = ..)]`
/// expands to).
///
/// # Panics
///
/// When `text` cannot be read; in a `const` item, that is a compile error.
#[track_caller]
pub const fn expiry_or_panic(text: &str) -> Duration {
    match parse_expiry(text) {
        Ok(d) => d,
        Err(problem) => panic!("{}", problem),
    }
}

/// Whether an execution that finished at `produced_at_us` has expired at `now_us` under
/// `expires_after`; its age when it has.
pub(crate) fn expired(
    produced_at_us: i64,
    now_us: i64,
    expires_after: Duration,
) -> Option<Duration> {
    let age = Duration::from_micros(now_us.saturating_sub(produced_at_us).max(0) as u64);
    (age > expires_after).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_read_units_only() {
        assert_eq!(parse_expiry("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_expiry(" 1d 12h "), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_expiry("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_expiry("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["soon", "", "7", "0d", "7 weeks", "-1d"] {
            assert!(parse_expiry(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_expiry("soon").unwrap_err().contains("e.g. 7d"));
    }

    #[test]
    fn reasons_write_durations_as_people_do() {
        let reason = crate::Reason::CacheExpired {
            age: Duration::from_secs(8 * 86_400 + 7),
            expires_after: Duration::from_secs(7 * 86_400),
        };
        assert_eq!(
            reason.to_string(),
            "cached execution expired (produced 8d ago, expires after 7d)"
        );
    }

    #[test]
    fn an_execution_expires_at_its_age_not_before() {
        let day = Duration::from_secs(86_400);
        let now = 100 * 86_400_000_000;
        let produced = now - 8 * 86_400_000_000;
        assert_eq!(expired(produced, now, 7 * day), Some(8 * day));
        assert_eq!(expired(produced, now, 9 * day), None);
        assert_eq!(
            expired(produced, now, 8 * day),
            None,
            "expires after, not at"
        );
        // A clock that went back: age zero, never expired by it.
        assert_eq!(expired(now + 5, now, Duration::from_secs(1)), None);
    }
}
