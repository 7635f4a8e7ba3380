//! What one step asks of the machine that runs it: [`Resources`] (cpus, memory, gpus, a
//! time limit), with [`Memory`] and [`TimeLimit`] parsed from the texts users write in
//! `#[step(resources(mem = "8G", time = "2h"))]`.
//!
//! Parsing is hand-written: the forms are few and Slurm-specific (a bare number is MiB for
//! memory and minutes for time, as `sbatch` reads them), and no well-kept crate parses both
//! `2h30m` and Slurm's `D-HH:MM:SS`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Resources one step (one job) asks for. Unset fields are left to the cluster's defaults.
///
/// ```
/// use pipeline_core::cluster::{Memory, Resources, TimeLimit};
///
/// let r = Resources::new()
///     .cpus(4)
///     .mem("8G".parse::<Memory>()?)
///     .gpus(1)
///     .time("2h".parse::<TimeLimit>()?);
/// assert_eq!(r.get_mem().map(Memory::mib), Some(8192));
/// assert_eq!(r.get_time().map(TimeLimit::seconds), Some(7200));
/// # Ok::<(), pipeline_core::cluster::ParseResourceError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    cpus: Option<u32>,
    mem: Option<Memory>,
    gpus: Option<u32>,
    time: Option<TimeLimit>,
}

impl Resources {
    /// No request: the cluster's defaults.
    pub const fn new() -> Self {
        Resources {
            cpus: None,
            mem: None,
            gpus: None,
            time: None,
        }
    }

    /// CPUs for the step's one task (`sbatch --cpus-per-task`).
    #[must_use]
    pub const fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Memory of the whole job (`sbatch --mem`).
    #[must_use]
    pub const fn mem(mut self, mem: Memory) -> Self {
        self.mem = Some(mem);
        self
    }

    /// GPUs (`sbatch --gres=gpu:N`).
    #[must_use]
    pub const fn gpus(mut self, gpus: u32) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Wall-clock limit (`sbatch --time`); the job is killed when it runs longer.
    #[must_use]
    pub const fn time(mut self, time: TimeLimit) -> Self {
        self.time = Some(time);
        self
    }

    /// The CPUs asked for, if any.
    pub fn get_cpus(&self) -> Option<u32> {
        self.cpus
    }

    /// The memory asked for, if any.
    pub fn get_mem(&self) -> Option<Memory> {
        self.mem
    }

    /// The GPUs asked for, if any.
    pub fn get_gpus(&self) -> Option<u32> {
        self.gpus
    }

    /// The time limit asked for, if any.
    pub fn get_time(&self) -> Option<TimeLimit> {
        self.time
    }

    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// An amount of memory, kept in MiB (Slurm's unit).
///
/// Parsed from `8G`, `8GB`, `8GiB`, `512M`, `1T`, `2048K` (binary units, any case) or a bare
/// number of MiB (`4096`), as `sbatch --mem` reads it. Whole numbers only: write `1536M`
/// rather than `1.5G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Memory {
    mib: u64,
}

impl Memory {
    /// `mib` MiB.
    pub const fn from_mib(mib: u64) -> Self {
        Memory { mib }
    }

    /// `gib` GiB (saturating).
    pub const fn from_gib(gib: u64) -> Self {
        Memory {
            mib: gib.saturating_mul(1024),
        }
    }

    /// The amount in MiB.
    pub fn mib(self) -> u64 {
        self.mib
    }
}

impl fmt::Display for Memory {
    /// Slurm's form: `8192M`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}M", self.mib)
    }
}

impl FromStr for Memory {
    type Err = ParseResourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Memory::parse(text).map_err(|problem| ParseResourceError::new("memory", text, problem))
    }
}

impl Memory {
    /// Parses `text` as [`FromStr`] does, in a `const` context: `#[step(resources(mem =
    /// ".."))]` is checked when the step compiles (see [`Memory::parse_or_panic`]).
    ///
    /// # Errors
    ///
    /// What is wrong with the text, as a sentence.
    pub const fn parse(text: &str) -> Result<Memory, &'static str> {
        let t = trim(text.as_bytes());
        let (number, unit) = leading_number(t);
        let Some(number) = number else {
            return Err(if unit.len() == t.len() {
                "it must start with a whole number, e.g. 8G or 512M"
            } else {
                "the number is too large"
            });
        };
        let unit = trim(unit);
        let unit = match strip_suffix(unit, b"ib") {
            Some(u) => u,
            None => match strip_suffix(unit, b"b") {
                Some(u) => u,
                None => unit,
            },
        };
        // KiB rounds up: a job never gets less than it asked for.
        let mib = if unit.is_empty() || eq_ignore_case(unit, b"m") {
            Some(number)
        } else if eq_ignore_case(unit, b"k") {
            Some(number.div_ceil(1024))
        } else if eq_ignore_case(unit, b"g") {
            number.checked_mul(1024)
        } else if eq_ignore_case(unit, b"t") {
            number.checked_mul(1024 * 1024)
        } else {
            return Err("unknown unit; use K, M, G or T (a bare number is MiB)");
        };
        match mib {
            None => Err("the amount is too large"),
            Some(0) => Err("it must be more than 0"),
            Some(mib) => Ok(Memory { mib }),
        }
    }

    /// [`Memory::parse`] for a constant: a text that cannot be read stops the build, with
    /// the problem as the message, at the caller's span (what `#[step(resources(..))]`
    /// expands to).
    ///
    /// # Panics
    ///
    /// When `text` cannot be read; in a `const` item, that is a compile error.
    #[track_caller]
    pub const fn parse_or_panic(text: &str) -> Memory {
        match Memory::parse(text) {
            Ok(m) => m,
            Err(problem) => panic!("{}", problem),
        }
    }
}

/// A wall-clock limit, kept in seconds.
///
/// Parsed from units (`90s`, `45m`, `2h`, `1d`, combined as `1h30m` or `1d 12h`) or from
/// Slurm's forms: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS` (a bare number
/// is minutes, as `sbatch --time` reads it). Slurm counts whole minutes and rounds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeLimit {
    seconds: u64,
}

impl TimeLimit {
    /// A limit of `seconds`.
    pub const fn from_seconds(seconds: u64) -> Self {
        TimeLimit { seconds }
    }

    /// The limit in seconds.
    pub fn seconds(self) -> u64 {
        self.seconds
    }

    /// The limit as a [`Duration`].
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.seconds)
    }

    /// Parses `text` as [`FromStr`] does, in a `const` context (see [`Memory::parse`]).
    ///
    /// # Errors
    ///
    /// What is wrong with the text, as a sentence.
    pub const fn parse(text: &str) -> Result<TimeLimit, &'static str> {
        let t = trim(text.as_bytes());
        if t.is_empty() {
            return Err("it is empty; write e.g. 2h, 30m or 1-00:00:00");
        }
        let seconds =
            if any_alphabetic(t) {
                match parse_units_ms(t) {
                    // Slurm counts whole minutes anyway; a part of a second rounds up.
                    Some(ms) => ms.div_ceil(1000),
                    None => {
                        return Err(
                            "write a number and a unit (s, m, h, d), e.g. 90s, 45m, 2h or 1h30m",
                        )
                    }
                }
            } else {
                match parse_slurm_time(t) {
                    Some(s) => s,
                    None => return Err(
                        "write MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, or units like 2h",
                    ),
                }
            };
        if seconds == 0 {
            return Err("it must be more than 0");
        }
        Ok(TimeLimit { seconds })
    }

    /// [`TimeLimit::parse`] for a constant (see [`Memory::parse_or_panic`]).
    ///
    /// # Panics
    ///
    /// When `text` cannot be read; in a `const` item, that is a compile error.
    #[track_caller]
    pub const fn parse_or_panic(text: &str) -> TimeLimit {
        match TimeLimit::parse(text) {
            Ok(t) => t,
            Err(problem) => panic!("{}", problem),
        }
    }
}

impl fmt::Display for TimeLimit {
    /// Slurm's form: `D-HH:MM:SS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        write!(
            f,
            "{}-{:02}:{:02}:{:02}",
            s / 86_400,
            s % 86_400 / 3600,
            s % 3600 / 60,
            s % 60
        )
    }
}

impl FromStr for TimeLimit {
    type Err = ParseResourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TimeLimit::parse(text)
            .map_err(|problem| ParseResourceError::new("time limit", text, problem))
    }
}

// The parsers are `const fn`s so that the macro's constants are checked by the compiler
// with the very code that reads run-time settings; hence byte loops instead of `str`
// methods, which are not `const`.

/// `text` without leading and trailing ASCII whitespace.
pub(crate) const fn trim(mut t: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = t {
        if !first.is_ascii_whitespace() {
            break;
        }
        t = rest;
    }
    while let [rest @ .., last] = t {
        if !last.is_ascii_whitespace() {
            break;
        }
        t = rest;
    }
    t
}

/// The whole number at the start of `t` (`None` when there is none or it overflows) and
/// the rest after its digits.
const fn leading_number(t: &[u8]) -> (Option<u64>, &[u8]) {
    let mut n: u64 = 0;
    let mut rest = t;
    let mut digits = 0;
    let mut overflow = false;
    while let [d @ b'0'..=b'9', tail @ ..] = rest {
        match n.checked_mul(10) {
            Some(m) => match m.checked_add((*d - b'0') as u64) {
                Some(m) => n = m,
                None => overflow = true,
            },
            None => overflow = true,
        }
        digits += 1;
        rest = tail;
    }
    if digits == 0 || overflow {
        (None, rest)
    } else {
        (Some(n), rest)
    }
}

const fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if !a[i].eq_ignore_ascii_case(&b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// `t` without `suffix` (any case) at its end.
const fn strip_suffix<'a>(t: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    if t.len() < suffix.len() {
        return None;
    }
    let (head, tail) = t.split_at(t.len() - suffix.len());
    if eq_ignore_case(tail, suffix) {
        Some(head)
    } else {
        None
    }
}

const fn any_alphabetic(t: &[u8]) -> bool {
    let mut i = 0;
    while i < t.len() {
        if t[i].is_ascii_alphabetic() {
            return true;
        }
        i += 1;
    }
    false
}

/// `t` without leading ASCII whitespace.
const fn trim_start(mut t: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = t {
        if !first.is_ascii_whitespace() {
            break;
        }
        t = rest;
    }
    t
}

/// `1d12h`, `1h 30m`, `90s`, `250ms`: numbers each followed by a unit, in milliseconds.
pub(crate) const fn parse_units_ms(t: &[u8]) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = trim(t);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let (n, after) = leading_number(rest);
        let Some(n) = n else { return None };
        let after = trim_start(after);
        let mut letters = 0;
        while letters < after.len() && after[letters].is_ascii_alphabetic() {
            letters += 1;
        }
        let (unit, tail) = after.split_at(letters);
        let scale = if eq_any(unit, &[b"ms", b"msec", b"msecs"]) {
            1
        } else if eq_any(unit, &[b"s", b"sec", b"secs"]) {
            1000
        } else if eq_any(unit, &[b"m", b"min", b"mins"]) {
            60_000
        } else if eq_any(unit, &[b"h", b"hr", b"hrs"]) {
            3_600_000
        } else if eq_any(unit, &[b"d", b"day", b"days"]) {
            86_400_000
        } else {
            return None;
        };
        let Some(add) = n.checked_mul(scale) else {
            return None;
        };
        let Some(sum) = total.checked_add(add) else {
            return None;
        };
        total = sum;
        rest = trim_start(tail);
    }
    Some(total)
}

/// Whether `t` has an ASCII letter (a unit), for callers outside this module.
pub(crate) const fn has_unit(t: &[u8]) -> bool {
    any_alphabetic(t)
}

const fn eq_any(unit: &[u8], names: &[&[u8]]) -> bool {
    let mut i = 0;
    while i < names.len() {
        if eq_ignore_case(unit, names[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// A field of Slurm's `--time`: digits only, not empty.
const fn field(s: &[u8]) -> Option<u64> {
    match leading_number(s) {
        (Some(n), []) => Some(n),
        _ => None,
    }
}

/// `s` split at the first `sep`, if there is one.
const fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == sep {
            let (head, tail) = s.split_at(i);
            let (_, tail) = tail.split_at(1);
            return Some((head, tail));
        }
        i += 1;
    }
    None
}

/// Slurm's `--time` forms.
const fn parse_slurm_time(t: &[u8]) -> Option<u64> {
    let (days, clock) = match split_once(t, b'-') {
        Some((d, c)) => match field(d) {
            Some(d) => (Some(d), c),
            None => return None,
        },
        None => (None, t),
    };
    // Up to three `:`-separated fields.
    let mut parts = [0u64; 3];
    let mut count = 0;
    let mut rest = clock;
    loop {
        if count == 3 {
            return None;
        }
        let (part, next) = match split_once(rest, b':') {
            Some((p, n)) => (p, Some(n)),
            None => (rest, None),
        };
        match field(part) {
            Some(v) => parts[count] = v,
            None => return None,
        }
        count += 1;
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    let (h, m, s) = match (days.is_some(), count) {
        (false, 1) => (0, parts[0], 0),
        (false, 2) => (0, parts[0], parts[1]),
        (_, 3) => (parts[0], parts[1], parts[2]),
        (true, 1) => (parts[0], 0, 0),
        (true, 2) => (parts[0], parts[1], 0),
        _ => return None,
    };
    let d = match days {
        Some(d) => d,
        None => 0,
    };
    let Some(d) = d.checked_mul(86_400) else {
        return None;
    };
    let Some(h) = h.checked_mul(3600) else {
        return None;
    };
    let Some(m) = m.checked_mul(60) else {
        return None;
    };
    let Some(total) = d.checked_add(h) else {
        return None;
    };
    let Some(total) = total.checked_add(m) else {
        return None;
    };
    total.checked_add(s)
}

/// A memory amount or time limit that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {what} `{text}`: {problem}")]
pub struct ParseResourceError {
    what: &'static str,
    text: String,
    problem: String,
}

impl ParseResourceError {
    fn new(what: &'static str, text: &str, problem: &str) -> Self {
        ParseResourceError {
            what,
            text: text.to_owned(),
            problem: problem.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mib(s: &str) -> Result<u64, ParseResourceError> {
        s.parse::<Memory>().map(Memory::mib)
    }

    fn secs(s: &str) -> Result<u64, ParseResourceError> {
        s.parse::<TimeLimit>().map(TimeLimit::seconds)
    }

    #[test]
    fn memory_reads_binary_units_and_bare_mib() {
        assert_eq!(mib("8G"), Ok(8192));
        assert_eq!(mib("8gb"), Ok(8192));
        assert_eq!(mib("8GiB"), Ok(8192));
        assert_eq!(mib(" 512M "), Ok(512));
        assert_eq!(mib("4096"), Ok(4096));
        assert_eq!(mib("1T"), Ok(1024 * 1024));
        assert_eq!(mib("1500K"), Ok(2), "KiB round up");
        assert_eq!(Memory::from_gib(8).to_string(), "8192M");
    }

    #[test]
    fn memory_rejects_odd_text_without_panicking() {
        for bad in [
            "",
            "G",
            "1.5G",
            "-1G",
            "8X",
            "0",
            "0G",
            "8 G B x",
            "１G",
            "99999999999999999999G",
        ] {
            let e = mib(bad).unwrap_err();
            assert!(e.to_string().contains("memory"), "{bad}: {e}");
        }
        assert!(mib("18014398509481984T").is_err(), "overflow is an error");
    }

    #[test]
    fn time_reads_units_and_slurm_forms() {
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("1h30m"), Ok(5400));
        assert_eq!(secs("1d 12h"), Ok(129_600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("45"), Ok(2700), "a bare number is minutes");
        assert_eq!(secs("0:01"), Ok(1));
        assert_eq!(secs("1:30"), Ok(90));
        assert_eq!(secs("02:00:00"), Ok(7200));
        assert_eq!(secs("1-00"), Ok(86_400));
        assert_eq!(secs("1-02:03"), Ok(86_400 + 7200 + 180));
        assert_eq!(secs("1-02:03:04"), Ok(86_400 + 7200 + 184));
        assert_eq!(TimeLimit::from_seconds(93_784).to_string(), "1-02:03:04");
        assert_eq!(TimeLimit::from_seconds(60).to_string(), "0-00:01:00");
    }

    #[test]
    fn time_rejects_odd_text_without_panicking() {
        for bad in [
            "",
            "h",
            "2x",
            "1:2:3:4",
            "-1",
            "1-",
            "-",
            "::",
            "0",
            "0s",
            "1.5h",
            "2h-3",
            "h2",
            "99999999999999999999d",
            "1-2-3",
            "1:",
            ":1",
        ] {
            let e = secs(bad).unwrap_err();
            assert!(e.to_string().contains("time limit"), "{bad}: {e}");
        }
    }

    #[test]
    fn resources_builder_keeps_each_field() {
        let r = Resources::new()
            .cpus(2)
            .gpus(1)
            .mem(Memory::from_mib(100))
            .time(TimeLimit::from_seconds(60));
        assert_eq!(r.get_cpus(), Some(2));
        assert_eq!(r.get_gpus(), Some(1));
        assert_eq!(r.get_mem(), Some(Memory::from_mib(100)));
        assert_eq!(r.get_time(), Some(TimeLimit::from_seconds(60)));
        assert!(!r.is_empty());
        assert!(Resources::new().is_empty());
    }
}
