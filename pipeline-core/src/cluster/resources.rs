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
    pub fn new() -> Self {
        Resources::default()
    }

    /// CPUs for the step's one task (`sbatch --cpus-per-task`).
    #[must_use]
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = Some(cpus);
        self
    }

    /// Memory of the whole job (`sbatch --mem`).
    #[must_use]
    pub fn mem(mut self, mem: Memory) -> Self {
        self.mem = Some(mem);
        self
    }

    /// GPUs (`sbatch --gres=gpu:N`).
    #[must_use]
    pub fn gpus(mut self, gpus: u32) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Wall-clock limit (`sbatch --time`); the job is killed when it runs longer.
    #[must_use]
    pub fn time(mut self, time: TimeLimit) -> Self {
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
        let err = |problem: &str| ParseResourceError::new("memory", text, problem);
        let t = text.trim();
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("it must start with a whole number, e.g. 8G or 512M"));
        }
        let number: u64 = t[..digits]
            .parse()
            .map_err(|_| err("the number is too large"))?;
        let unit = t[digits..].trim().to_ascii_lowercase();
        let unit = unit
            .strip_suffix("ib")
            .or_else(|| unit.strip_suffix('b'))
            .unwrap_or(&unit);
        // KiB rounds up: a job never gets less than it asked for.
        let mib = match unit {
            "" | "m" => Some(number),
            "k" => Some(number.div_ceil(1024)),
            "g" => number.checked_mul(1024),
            "t" => number.checked_mul(1024 * 1024),
            _ => return Err(err("unknown unit; use K, M, G or T (a bare number is MiB)")),
        };
        let mib = mib.ok_or_else(|| err("the amount is too large"))?;
        if mib == 0 {
            return Err(err("it must be more than 0"));
        }
        Ok(Memory { mib })
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
        let err = |problem: &str| ParseResourceError::new("time limit", text, problem);
        let t = text.trim();
        if t.is_empty() {
            return Err(err("it is empty; write e.g. 2h, 30m or 1-00:00:00"));
        }
        let seconds = if t.bytes().any(|b| b.is_ascii_alphabetic()) {
            parse_units(t).ok_or_else(|| {
                err("write a number and a unit (s, m, h, d), e.g. 90s, 45m, 2h or 1h30m")
            })?
        } else {
            parse_slurm_time(t).ok_or_else(|| {
                err("write MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, or units like 2h")
            })?
        };
        if seconds == 0 {
            return Err(err("it must be more than 0"));
        }
        Ok(TimeLimit { seconds })
    }
}

/// `1d12h`, `1h 30m`, `90s`: numbers each followed by a unit.
fn parse_units(t: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = t.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let scale = match rest[..letters].to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" => 1,
            "m" | "min" | "mins" => 60,
            "h" | "hr" | "hrs" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(scale)?)?;
        rest = rest[letters..].trim_start();
    }
    Some(total)
}

/// Slurm's `--time` forms.
fn parse_slurm_time(t: &str) -> Option<u64> {
    fn num(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let (days, clock) = match t.split_once('-') {
        Some((d, c)) => (Some(num(d)?), c),
        None => (None, t),
    };
    let parts: Vec<u64> = clock.split(':').map(num).collect::<Option<_>>()?;
    let (h, m, s) = match (days.is_some(), parts.as_slice()) {
        (false, [m]) => (0, *m, 0),
        (false, [m, s]) => (0, *m, *s),
        (false, [h, m, s]) | (true, [h, m, s]) => (*h, *m, *s),
        (true, [h]) => (*h, 0, 0),
        (true, [h, m]) => (*h, *m, 0),
        _ => return None,
    };
    days.unwrap_or(0)
        .checked_mul(86_400)?
        .checked_add(h.checked_mul(3600)?)?
        .checked_add(m.checked_mul(60)?)?
        .checked_add(s)
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
