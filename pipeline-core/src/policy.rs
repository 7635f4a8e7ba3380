//! How a step is run, apart from what it computes: retries (with a growing, jittered delay)
//! and a timeout. `#[step(retries = 3, retry_delay = "2s", backoff = 2.0, timeout = "10m")]`
//! builds a [`StepPolicy`] constant; [`Pipeline::step_retries`](crate::Pipeline::step_retries)
//! and [`Pipeline::step_timeout`](crate::Pipeline::step_timeout) override it for one run.
//!
//! Nothing here enters the cache key: a step retried or given more time computes the same
//! thing. Only the final attempt decides the step's status; every attempt is recorded.
//!
//! The delay before attempt `n + 1` is `retry_delay × backoff^(n - 1)`, capped at
//! [`MAX_RETRY_DELAY`], plus up to 10 % of random jitter so that many steps failing at once
//! (a flaky service) do not retry in lockstep. Prefect (`retry_delay_seconds`,
//! `retry_jitter_factor`) and Dagster (`RetryPolicy(delay, backoff, jitter)`) work the same.

use std::fmt;
use std::time::Duration;

use crate::cluster::resources::{has_unit, parse_units_ms, trim};

/// The longest delay between two attempts, whatever `retry_delay` and `backoff` say.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// The random part of a retry delay: up to this fraction of the delay is added.
const JITTER: f64 = 0.1;

/// A step's retries and timeout (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepPolicy {
    retries: u32,
    retry_delay: Duration,
    backoff: f64,
    timeout: Option<Duration>,
}

impl Default for StepPolicy {
    fn default() -> Self {
        StepPolicy::new()
    }
}

impl StepPolicy {
    /// No retries, no delay, a backoff of 1 (a constant delay), no timeout.
    pub const fn new() -> Self {
        StepPolicy {
            retries: 0,
            retry_delay: Duration::ZERO,
            backoff: 1.0,
            timeout: None,
        }
    }

    /// Attempts after the first one that fails (`retries = 3`: at most 4 attempts).
    pub const fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The delay before the first retry.
    pub const fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// The factor each further delay grows by (1 keeps it constant).
    ///
    /// # Panics
    ///
    /// When `backoff` is below 1 or not finite; in a `const` item, that is a compile error.
    #[track_caller]
    pub const fn backoff(mut self, backoff: f64) -> Self {
        if !(backoff >= 1.0 && backoff <= 1e6) {
            panic!("`backoff` must be a number from 1 (a constant delay) up, e.g. `backoff = 2.0`");
        }
        self.backoff = backoff;
        self
    }

    /// The longest an attempt may run.
    ///
    /// # Panics
    ///
    /// When `timeout` is zero; in a `const` item, that is a compile error.
    #[track_caller]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            panic!("`timeout` must be more than 0, e.g. `timeout = \"10m\"`");
        }
        self.timeout = Some(timeout);
        self
    }

    /// How many retries: at most `get_retries() + 1` attempts.
    pub fn get_retries(&self) -> u32 {
        self.retries
    }

    /// The delay before the first retry.
    pub fn get_retry_delay(&self) -> Duration {
        self.retry_delay
    }

    /// The growth factor of the delay.
    pub fn get_backoff(&self) -> f64 {
        self.backoff
    }

    /// The limit of one attempt, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The delay after failed attempt `attempt` (1-based) before the next one, without
    /// jitter: `retry_delay × backoff^(attempt - 1)`, at most [`MAX_RETRY_DELAY`].
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff
            .powi(attempt.saturating_sub(1).min(1000) as i32);
        let secs = self.retry_delay.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= MAX_RETRY_DELAY.as_secs_f64() {
            MAX_RETRY_DELAY
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// [`base_delay`](Self::base_delay) plus up to 10 % of random jitter (still at most
    /// [`MAX_RETRY_DELAY`]).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base_delay(attempt);
        (base + base.mul_f64(JITTER * unit_random())).min(MAX_RETRY_DELAY)
    }
}

/// A number in `[0, 1)`, different on each call. Jitter needs no quality, so std's
/// randomly keyed hasher is enough (no RNG crate for this).
fn unit_random() -> f64 {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Reads a duration written with units: `250ms`, `2s`, `10m`, `2h`, `7d`, combined as
/// `1h30m` or `1d 12h` (a bare number is refused: its unit would be a guess). The
/// `#[step]` options `retry_delay` and `timeout` are read with it in a constant, so a text it
/// refuses is a compile error at the attribute.
///
/// # Errors
///
/// What is wrong with the text, as a sentence.
pub const fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let t = trim(text.as_bytes());
    if t.is_empty() {
        return Err("it is empty; write a number and a unit, e.g. 2s, 10m or 1h30m");
    }
    if !has_unit(t) {
        return Err("add a unit (ms, s, m, h, d), e.g. 2s, 10m or 1h30m");
    }
    match parse_units_ms(t) {
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Err("write a number and a unit (ms, s, m, h, d), e.g. 2s, 10m or 1h30m"),
    }
}

/// [`parse_duration`] for a constant.
///
/// # Panics
///
/// When `text` cannot be read; in a `const` item, that is a compile error.
#[track_caller]
pub const fn parse_duration_or_panic(text: &str) -> Duration {
    match parse_duration(text) {
        Ok(d) => d,
        Err(problem) => panic!("{}", problem),
    }
}

/// A duration as people write it: `1.5s`, `250ms`, `10m`, `2h 5m`, `8d`: its largest unit,
/// with one decimal below a minute.
pub fn human_duration(d: Duration) -> HumanDuration {
    HumanDuration(d)
}

/// See [`human_duration`].
#[derive(Clone, Copy, Debug)]
pub struct HumanDuration(Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let secs = d.as_secs();
        if secs == 0 && d.subsec_millis() > 0 && d < Duration::from_millis(100) {
            return write!(f, "{}ms", d.as_millis());
        }
        if secs < 60 {
            let s = format!("{:.1}", d.as_secs_f64());
            return write!(f, "{}s", s.strip_suffix(".0").unwrap_or(&s));
        }
        let (unit, size) = if secs >= 86_400 {
            ("d", 86_400)
        } else if secs >= 3600 {
            ("h", 3600)
        } else {
            ("m", 60)
        };
        let (whole, rest) = (secs / size, secs % size);
        let (sub, sub_size) = match unit {
            "d" => ("h", 3600),
            "h" => ("m", 60),
            _ => ("s", 1),
        };
        let part = rest / sub_size;
        if part == 0 {
            write!(f, "{whole}{unit}")
        } else {
            write!(f, "{whole}{unit} {part}{sub}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").unwrap_err().contains("unit"));
        assert!(parse_duration("10").unwrap_err().contains("add a unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn delays_grow_by_backoff_up_to_the_cap() {
        let p = StepPolicy::new()
            .retries(5)
            .retry_delay(Duration::from_secs(2))
            .backoff(2.0);
        assert_eq!(p.base_delay(1), Duration::from_secs(2));
        assert_eq!(p.base_delay(2), Duration::from_secs(4));
        assert_eq!(p.base_delay(3), Duration::from_secs(8));
        let huge = p.retry_delay(Duration::from_secs(500));
        assert_eq!(huge.base_delay(3), MAX_RETRY_DELAY);
        for attempt in 1..=4 {
            let d = p.delay(attempt);
            let base = p.base_delay(attempt);
            assert!(d >= base && d <= base.mul_f64(1.1), "{d:?} vs {base:?}");
        }
    }

    #[test]
    #[should_panic(expected = "backoff")]
    fn a_backoff_below_one_is_refused() {
        let _ = StepPolicy::new().backoff(0.5);
    }

    #[test]
    fn human_durations() {
        let h = |ms: u64| human_duration(Duration::from_millis(ms)).to_string();
        assert_eq!(h(40), "40ms");
        assert_eq!(h(2100), "2.1s");
        assert_eq!(h(1000), "1s");
        assert_eq!(h(600_000), "10m");
        assert_eq!(h(8 * 86_400_000), "8d");
        assert_eq!(h(7 * 86_400_000 + 3_600_000 * 5), "7d 5h");
        assert_eq!(h(90_000), "1m 30s");
    }
}
