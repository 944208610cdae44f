//! Plots of an experiment's summary as one SVG: panels side by side, each
//! the mean of a figure over replications with its Q25–Q75 range.

use std::fmt::Write as _;

use super::SummaryRow;

const COLOURS: [&str; 8] = ["#999999", "#e08a1e", "#2a6fdb", "#3a9a48", "#b03060", "#6a3d9a", "#17becf", "#8c564b"];

/// One panel of a plot.
#[derive(Clone, Debug)]
pub enum Chart {
    /// One line per value of `series`, against the numeric `x` key.
    Lines { title: String, x: &'static str, series: &'static str, metric: &'static str, log_x: bool },
    /// One bar per value of `category` (and per `series` within it).
    Bars { title: String, category: &'static str, series: Option<&'static str>, metric: &'static str },
}

impl Chart {
    pub fn lines(title: &str, x: &'static str, series: &'static str, metric: &'static str) -> Chart {
        Chart::Lines { title: title.into(), x, series, metric, log_x: false }
    }
    /// The same chart with a logarithmic x axis.
    pub fn log_x(self) -> Chart {
        match self {
            Chart::Lines { title, x, series, metric, .. } => Chart::Lines { title, x, series, metric, log_x: true },
            other => other,
        }
    }
    pub fn bars(title: &str, category: &'static str, series: Option<&'static str>, metric: &'static str) -> Chart {
        Chart::Bars { title: title.into(), category, series, metric }
    }
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn nice_max(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * p).find(|m| *m >= v).unwrap_or(10.0 * p)
}

const PW: f64 = 380.0;
const PH: f64 = 220.0;
const TOP: f64 = 46.0;
const LEFT: f64 = 64.0;
const GAP: f64 = 90.0;

/// The plot of `charts` over `rows`.
pub fn render(title: &str, charts: &[Chart], rows: &[SummaryRow]) -> String {
    let w = LEFT + charts.len() as f64 * (PW + GAP) + 40.0;
    let h = TOP + PH + 110.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="16" font-weight="bold" font-size="14">{}</text>"#,
        esc(title)
    );
    for (i, c) in charts.iter().enumerate() {
        let x0 = LEFT + i as f64 * (PW + GAP);
        match c {
            Chart::Lines { title, x, series, metric, log_x } => {
                lines(&mut s, rows, x0, title, x, series, metric, *log_x)
            }
            Chart::Bars { title, category, series, metric } => bars(&mut s, rows, x0, title, category, *series, metric),
        }
    }
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn axes(s: &mut String, x0: f64, title: &str, ymax: f64, ylabel: &str) {
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text><line x1="{x0}" y1="{TOP}" x2="{x0}" y2="{:.1}" stroke="black"/><line x1="{x0}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
        x0 + PW / 2.0,
        TOP - 10.0,
        esc(title),
        TOP + PH,
        TOP + PH,
        x0 + PW,
        TOP + PH
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let y = TOP + PH - PH * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{}</text>"##,
            x0,
            x0 + PW,
            x0 - 4.0,
            y + 3.0,
            fmt_num(v)
        );
    }
    let _ = write!(
        s,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" font-size="10">{}</text>"#,
        x0 - 48.0,
        TOP + PH / 2.0,
        esc(ylabel)
    );
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn key<'a>(r: &'a SummaryRow, k: &str) -> Option<&'a str> {
    r.group.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[allow(clippy::too_many_arguments)]
fn lines(s: &mut String, rows: &[SummaryRow], x0: f64, title: &str, x: &str, series: &str, metric: &str, log_x: bool) {
    let pts: Vec<&SummaryRow> = rows.iter().filter(|r| r.metric == metric && key(r, x).is_some()).collect();
    let xs: Vec<f64> = pts.iter().filter_map(|r| key(r, x)?.parse::<f64>().ok()).collect();
    let tx = |v: f64| if log_x { v.max(1e-9).log10() } else { v };
    let (xmin, xmax) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(tx(*v)), b.max(tx(*v))));
    let span = if xmax > xmin { xmax - xmin } else { 1.0 };
    let ymax = nice_max(pts.iter().map(|r| r.stats.q75.max(r.stats.mean)).fold(0.0, f64::max));
    axes(s, x0, title, ymax, metric);
    let px = |v: f64| x0 + 10.0 + (PW - 20.0) * (tx(v) - xmin) / span;
    let py = |v: f64| TOP + PH - PH * (v / ymax).clamp(0.0, 1.05);
    let mut ticks = xs.clone();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    for t in &ticks {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
            px(*t),
            TOP + PH + 14.0,
            fmt_num(*t)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        x0 + PW / 2.0,
        TOP + PH + 30.0,
        esc(x)
    );
    let names = distinct(pts.iter().map(|r| key(r, series).unwrap_or("").to_string()));
    for (i, name) in names.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut line: Vec<(f64, &SummaryRow)> = pts
            .iter()
            .filter(|r| key(r, series).unwrap_or("") == name)
            .filter_map(|r| Some((key(r, x)?.parse::<f64>().ok()?, *r)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = line
            .iter()
            .filter(|(_, r)| r.stats.mean.is_finite())
            .map(|(v, r)| format!("{:.1},{:.1}", px(*v), py(r.stats.mean)))
            .collect();
        let _ = write!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, path.join(" "));
        for (v, r) in &line {
            if r.stats.mean.is_finite() {
                let _ = write!(
                    s,
                    r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{colour}"/><circle cx="{0:.1}" cy="{3:.1}" r="3" fill="{colour}"/>"#,
                    px(*v),
                    py(r.stats.q25),
                    py(r.stats.q75),
                    py(r.stats.mean)
                );
            }
        }
        legend(s, x0, i, colour, name);
    }
}

fn legend(s: &mut String, x0: f64, i: usize, colour: &str, name: &str) {
    let (col, row) = (i % 3, i / 3);
    let lx = x0 + col as f64 * (PW / 3.0);
    let ly = TOP + PH + 48.0 + row as f64 * 16.0;
    let _ = write!(
        s,
        r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="8" fill="{colour}"/><text x="{:.1}" y="{ly:.1}" font-size="11">{}</text>"#,
        ly - 8.0,
        lx + 16.0,
        esc(name)
    );
}

fn bars(s: &mut String, rows: &[SummaryRow], x0: f64, title: &str, category: &str, series: Option<&str>, metric: &str) {
    let pts: Vec<&SummaryRow> = rows.iter().filter(|r| r.metric == metric && key(r, category).is_some()).collect();
    let cats = distinct(pts.iter().map(|r| key(r, category).unwrap_or("").to_string()));
    let sers = match series {
        Some(k) => distinct(pts.iter().map(|r| key(r, k).unwrap_or("").to_string())),
        None => vec![String::new()],
    };
    let ymax = nice_max(pts.iter().map(|r| r.stats.q75.max(r.stats.mean)).fold(0.0, f64::max));
    axes(s, x0, title, ymax, metric);
    let slot = PW / cats.len().max(1) as f64;
    let bw = slot * 0.8 / sers.len() as f64;
    for (ci, c) in cats.iter().enumerate() {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
            x0 + (ci as f64 + 0.5) * slot,
            TOP + PH + 14.0,
            esc(c)
        );
        for (si, sn) in sers.iter().enumerate() {
            let Some(r) = pts.iter().find(|r| {
                key(r, category) == Some(c.as_str()) && series.is_none_or(|k| key(r, k) == Some(sn.as_str()))
            }) else {
                continue;
            };
            if !r.stats.mean.is_finite() {
                continue;
            }
            let v = r.stats.mean.max(0.0);
            let bh = PH * (v / ymax).min(1.05);
            let bx = x0 + ci as f64 * slot + slot * 0.1 + si as f64 * bw;
            let colour = COLOURS[(si + usize::from(series.is_some())) % COLOURS.len()];
            let _ = write!(
                s,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{colour}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                TOP + PH - bh,
                bw * 0.9,
                bx + bw * 0.45,
                TOP + PH - bh - 3.0,
                fmt_num(r.stats.mean)
            );
        }
    }
    if let Some(k) = series {
        for (si, sn) in sers.iter().enumerate() {
            legend(s, x0, si, COLOURS[(si + 1) % COLOURS.len()], &format!("{k} {sn}"));
        }
    }
}
