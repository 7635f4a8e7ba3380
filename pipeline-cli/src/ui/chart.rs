//! The UI's plots as inline SVG: a line (or point) chart and a histogram, with axes, tick
//! labels, axis titles (carrying units) and a chart title.
//!
//! Hand-built rather than drawn with `plotters`: each point and bar carries its values as
//! `data-*` attributes and a `<title>` tooltip (the tests read the points from the rendered
//! DOM, and readers hover them), which plotters' SVG backend cannot emit, and text needs no
//! font metrics here since the browser lays it out. The whole of it is the tick rule and
//! two drawings.

use std::fmt::Write as _;

use super::pages::esc;

/// Size of a chart and the room kept for its title and axes.
const W: f64 = 640.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 50.0;
/// At most this many points are drawn as markers; longer series are a line only.
const MAX_MARKERS: usize = 400;
/// Longer series are reduced to the minimum and maximum of each of this many buckets.
const MAX_LINE_POINTS: usize = 2000;

/// The texts around a chart: its title and the titles of its axes (name and unit, e.g.
/// `accuracy (fraction)`).
pub struct Labels<'a> {
    /// Above the chart.
    pub title: &'a str,
    /// Below the x axis.
    pub x: &'a str,
    /// Beside the y axis.
    pub y: &'a str,
}

/// A line through `points` (sorted by x) with a marker on each (up to 400 points), each
/// marker holding its `data-x`, `data-y` and a tooltip (`label` of the point when given).
/// Non-finite points are left out. `None` when no point is finite.
pub fn line(
    labels: &Labels<'_>,
    points: &[(f64, f64)],
    point_labels: Option<&[String]>,
) -> Option<String> {
    let mut pts: Vec<(f64, f64, Option<&str>)> = points
        .iter()
        .enumerate()
        .filter(|(_, (x, y))| x.is_finite() && y.is_finite())
        .map(|(i, &(x, y))| {
            (
                x,
                y,
                point_labels.and_then(|l| l.get(i)).map(String::as_str),
            )
        })
        .collect();
    if pts.is_empty() {
        return None;
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let xs = Scale::new(pts.iter().map(|p| p.0), LEFT, W - RIGHT);
    let ys = Scale::new(pts.iter().map(|p| p.1), H - BOTTOM, TOP);
    let mut out = open(labels, "line", pts.len());
    axes(&mut out, &xs, &ys, labels);
    let path: Vec<String> = thin(&pts)
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", xs.at(x), ys.at(y)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline class="series" points="{}"/>"#,
        path.join(" ")
    );
    if pts.len() <= MAX_MARKERS {
        out.push_str("<g class=\"points\">\n");
        for &(x, y, label) in &pts {
            let tip = match label {
                Some(l) => format!("{l}: {} = {}, {} = {}", labels.x, num(x), labels.y, num(y)),
                None => format!("{} = {}, {} = {}", labels.x, num(x), labels.y, num(y)),
            };
            let _ = writeln!(
                out,
                r#"<circle class="point" cx="{:.1}" cy="{:.1}" r="3.5" data-x="{}" data-y="{}"><title>{}</title></circle>"#,
                xs.at(x),
                ys.at(y),
                x,
                y,
                esc(&tip)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    Some(out)
}

/// A histogram of the finite `values`: Sturges' number of equal-width bins (at most 40),
/// each bar holding `data-lo`, `data-hi` and `data-count`. `None` when no value is finite.
pub fn histogram(labels: &Labels<'_>, values: &[f64]) -> Option<String> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return None;
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let bins = if lo == hi {
        1
    } else {
        ((finite.len() as f64).log2().ceil() as usize + 1).clamp(1, 40)
    };
    let width = if lo == hi {
        1.0
    } else {
        (hi - lo) / bins as f64
    };
    let (start, end) = if lo == hi {
        (lo - 0.5, lo + 0.5)
    } else {
        (lo, hi)
    };
    let mut counts = vec![0usize; bins];
    for v in &finite {
        let i = if lo == hi {
            0
        } else {
            (((v - lo) / width) as usize).min(bins - 1)
        };
        counts[i] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0) as f64;
    let xs = Scale::new([start, end].into_iter(), LEFT, W - RIGHT);
    let ys = Scale::new([0.0, most].into_iter(), H - BOTTOM, TOP);
    let mut out = open(labels, "histogram", bins);
    axes(&mut out, &xs, &ys, labels);
    out.push_str("<g class=\"bars\">\n");
    for (i, &count) in counts.iter().enumerate() {
        let (b_lo, b_hi) = if lo == hi {
            (start, end)
        } else {
            (lo + width * i as f64, lo + width * (i + 1) as f64)
        };
        let x0 = xs.at(b_lo);
        let x1 = xs.at(b_hi);
        let y = ys.at(count as f64);
        let last = i + 1 == bins;
        let _ = writeln!(
            out,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" data-lo="{b_lo}" data-hi="{b_hi}" data-count="{count}"><title>{}</title></rect>"#,
            x0 + 0.5,
            y,
            (x1 - x0 - 1.0).max(0.5),
            (ys.at(0.0) - y).max(0.0),
            esc(&format!(
                "[{}, {}{}: {count} value{}",
                num(b_lo),
                num(b_hi),
                if last { "]" } else { ")" },
                if count == 1 { "" } else { "s" }
            )),
        );
    }
    out.push_str("</g>\n</svg>\n");
    Some(out)
}

/// The opening tag, with the chart's title.
fn open(labels: &Labels<'_>, kind: &str, n: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg class="chart {kind}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}" data-n="{n}">"#,
        esc(labels.title)
    );
    let _ = writeln!(
        out,
        r#"<text class="chart-title" x="{:.1}" y="20" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        esc(labels.title)
    );
    out
}

/// Both axes: lines, ticks with labels, light grid lines, and the axis titles.
fn axes(out: &mut String, xs: &Scale, ys: &Scale, labels: &Labels<'_>) {
    let (x0, x1) = (LEFT, W - RIGHT);
    let (y0, y1) = (H - BOTTOM, TOP);
    out.push_str("<g class=\"axes\">\n");
    for &t in &ys.ticks {
        let y = ys.at(t);
        let _ = writeln!(
            out,
            r#"<line class="grid" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/><text class="tick y" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            y + 4.0,
            esc(&ys.label(t))
        );
    }
    for &t in &xs.ticks {
        let x = xs.at(t);
        let _ = writeln!(
            out,
            r#"<line class="tickmark" x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}"/><text class="tick x" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y0 + 5.0,
            y0 + 18.0,
            esc(&xs.label(t))
        );
    }
    let _ = writeln!(
        out,
        r#"<line class="axis" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/><line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text class="axis-title x" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 10.0,
        esc(labels.x)
    );
    let _ = writeln!(
        out,
        r#"<text class="axis-title y" x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(labels.y)
    );
    out.push_str("</g>\n");
}

/// A long series reduced for drawing: the lowest and highest point of each bucket, in
/// order, so spikes stay visible.
fn thin(pts: &[(f64, f64, Option<&str>)]) -> Vec<(f64, f64)> {
    if pts.len() <= MAX_LINE_POINTS {
        return pts.iter().map(|p| (p.0, p.1)).collect();
    }
    let per = pts.len().div_ceil(MAX_LINE_POINTS / 2);
    let mut out = Vec::with_capacity(MAX_LINE_POINTS + 2);
    for chunk in pts.chunks(per) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(lo), Some(hi)) = (lo, hi) {
            let (a, b) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
            out.push((a.0, a.1));
            out.push((b.0, b.1));
        }
    }
    out
}

/// A linear map from data to pixels over "nice" ticks that cover the data.
struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    ticks: Vec<f64>,
    step: f64,
}

impl Scale {
    fn new(values: impl Iterator<Item = f64>, from: f64, to: f64) -> Scale {
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if lo == hi {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step((hi - lo) / 5.0);
        let first = (lo / step).floor() * step;
        let last = (hi / step).ceil() * step;
        let ticks: Vec<f64> = (0..=((last - first) / step).round() as usize)
            .map(|i| first + step * i as f64)
            .collect();
        Scale {
            lo: first,
            hi: last,
            from,
            to,
            ticks,
            step,
        }
    }

    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// A tick's text, with as many decimals as the tick step needs.
    fn label(&self, v: f64) -> String {
        let v = if v.abs() < self.step * 1e-9 { 0.0 } else { v };
        let magnitude = self.lo.abs().max(self.hi.abs());
        if magnitude >= 1e6 || (magnitude < 1e-3 && magnitude > 0.0) {
            return format!("{v:.1e}");
        }
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    let f = raw / power;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * power
}

/// A number for a tooltip: up to 6 significant digits.
pub fn num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = 6 - (v.abs().log10().floor() as i32 + 1);
    if !(0..=12).contains(&digits) {
        return format!("{v:.4e}");
    }
    let s = format!("{v:.*}", digits as usize);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice_and_cover_the_data() {
        let s = Scale::new([0.83, 0.97].into_iter(), 0.0, 100.0);
        assert_eq!(s.step, 0.05);
        assert!(s.lo <= 0.83 && s.hi >= 0.97);
        assert_eq!(s.label(0.85), "0.85");
        let s = Scale::new([0.0, 37.0].into_iter(), 0.0, 100.0);
        assert_eq!(s.step, 10.0);
        assert_eq!(s.ticks, [0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_eq!(s.label(20.0), "20");
        // One value: a range around it.
        let s = Scale::new([5.0].into_iter(), 0.0, 100.0);
        assert!(s.lo < 5.0 && s.hi > 5.0);
    }

    #[test]
    fn line_chart_marks_every_finite_point() {
        let labels = Labels {
            title: "t",
            x: "gamma",
            y: "accuracy",
        };
        let svg = line(&labels, &[(0.1, 0.9), (0.2, f64::NAN), (0.4, 0.95)], None).unwrap();
        assert_eq!(svg.matches("class=\"point\"").count(), 2, "{svg}");
        assert!(svg.contains("data-x=\"0.4\" data-y=\"0.95\""), "{svg}");
        assert!(svg.contains(">gamma</text>") && svg.contains(">accuracy</text>"));
        assert!(line(&labels, &[(f64::NAN, 1.0)], None).is_none());
    }

    #[test]
    fn histogram_counts_every_value_once() {
        let labels = Labels {
            title: "t",
            x: "value",
            y: "count",
        };
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        let svg = histogram(&labels, &values).unwrap();
        let total: usize = svg
            .match_indices("data-count=\"")
            .map(|(i, m)| {
                let rest = &svg[i + m.len()..];
                rest[..rest.find('"').unwrap()].parse::<usize>().unwrap()
            })
            .sum();
        assert_eq!(total, 100);
        assert_eq!(
            svg.matches("class=\"bar\"").count(),
            8,
            "Sturges: log2(100) + 1"
        );
        let one = histogram(&labels, &[3.0, 3.0]).unwrap();
        assert!(one.contains("data-count=\"2\""), "{one}");
    }

    #[test]
    fn numbers_for_tooltips() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(0.123456789), "0.123457");
        assert_eq!(num(1234.5678), "1234.57");
        assert_eq!(num(1e-9), "1.0000e-9");
    }
}
