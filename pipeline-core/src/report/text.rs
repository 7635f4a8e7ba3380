//! Formatting helpers of the reports' text: timestamps, durations, sizes, short hashes,
//! text tables. Public so that other renderings of the reports (the CLI's HTML page) write
//! the same texts.

use std::time::Duration;

pub use crate::time::utc_timestamp as timestamp;

/// `0.014s`, `12.3s`, `4m 05s`, `2h 03m`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.3}s")
    } else if s < 3600.0 {
        let s = s as u64;
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        let s = s as u64;
        format!("{}h {:02}m", s / 3600, (s / 60) % 60)
    }
}

/// `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The first 12 characters of a hash or key (all of it when shorter).
pub fn short(hash: &str) -> &str {
    // By characters, so that a damaged (non-hex) value never splits a character.
    match hash.char_indices().nth(12) {
        Some((end, _)) => &hash[..end],
        None => hash,
    }
}

/// The first 12 hex digits of a hash.
pub fn short_hash(hash: crate::key::Hash128) -> String {
    short(&hash.to_string()).to_string()
}

/// Calls' names (in their order) as a list a person reads: a group of more than 8 calls
/// named `<call>[i]` (a map's per-item calls) as its range, `train_fold[0..=9999]`, every
/// other name as it is. For messages that list a run's calls.
pub fn call_names<'a>(names: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    super::group::call_names(names)
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < cols {
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(timestamp(1_795_435_554_573_248), "2026-11-23 12:05:54");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(duration(Duration::from_millis(14)), "0.014s");
        assert_eq!(duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(duration(Duration::from_secs(7380)), "2h 03m");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(short("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééééééé"), "éééééééééééé");
        assert_eq!(
            table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]),
            "A    BB\nxyz  1\n"
        );
    }
}
