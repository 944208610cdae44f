//! The experiment's plot: SLO violations against load per arm, and the
//! reduction against reactive per precursor reliability at load 0.7.

use std::fmt::Write as _;

use super::{Arm, Summary};

const COLOURS: [&str; 5] = ["#999999", "#e08a1e", "#2a6fdb", "#b03060", "#3a9a48"];

fn nearest(values: impl Iterator<Item = f64>, to: f64) -> f64 {
    values.fold(f64::NAN, |best, v| if best.is_nan() || (v - to).abs() < (best - to).abs() { v } else { best })
}

pub fn svg(sums: &[Summary]) -> String {
    let rel = nearest(sums.iter().map(|s| s.reliability), 0.7);
    let load = nearest(sums.iter().map(|s| s.load), 0.7);
    let (pw, ph, top, left) = (400.0, 220.0, 46.0, 56.0);
    let w = left + 3.0 * pw + 160.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#,
        top + ph + 80.0
    );
    let pts: Vec<&Summary> = sums.iter().filter(|x| x.reliability == rel).collect();
    lines(&mut s, &pts, left, top, pw, ph, &format!("SLO violations (% of jobs), reliability {rel}"), "%", |x| {
        x.slo_violation_pct
    });
    lines(&mut s, &pts, left + pw + 70.0, top, pw, ph, "runs lost to node failures (per run of the sweep)", "", |x| {
        x.runs_lost
    });
    // Panel 2: fewer violations than reactive (%) per reliability at the
    // headline load, extra CPU above each bar.
    let x0 = left + 2.0 * (pw + 70.0);
    let bars: Vec<&Summary> = sums.iter().filter(|x| x.load == load && x.arm != Arm::Reactive).collect();
    let rels: Vec<f64> = {
        let mut r: Vec<f64> = bars.iter().map(|x| x.reliability).collect();
        r.sort_by(f64::total_cmp);
        r.dedup();
        r
    };
    let _ = write!(
        s,
        r#"<text x="{}" y="18" text-anchor="middle" font-weight="bold">SLO violations fewer than reactive, load {load}</text>"#,
        x0 + pw / 2.0
    );
    axes(&mut s, x0, top, pw, ph, 100.0, "%");
    let slot = pw / rels.len().max(1) as f64;
    for (i, r) in rels.iter().enumerate() {
        for (k, arm) in [Arm::Migrate, Arm::Replicate, Arm::Scaling].iter().enumerate() {
            let Some(b) = bars.iter().find(|x| x.reliability == *r && x.arm == *arm) else { continue };
            let v = b.fewer_violations_pct.clamp(0.0, 100.0);
            let bh = ph * v / 100.0;
            let bx = x0 + i as f64 * slot + slot * 0.08 + k as f64 * slot * 0.28;
            let _ = write!(
                s,
                r#"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{:.0} %</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">cpu {:+.1} %</text>"#,
                top + ph - bh,
                slot * 0.26,
                COLOURS[k + 1],
                bx + slot * 0.13,
                top + ph - bh - 14.0,
                b.fewer_violations_pct,
                bx + slot * 0.13,
                top + ph - bh - 3.0,
                b.extra_cpu_pct
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{r}</text>"#,
            x0 + (i as f64 + 0.5) * slot,
            top + ph + 16.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">share of failures announced by a precursor</text>"#,
        x0 + pw / 2.0,
        top + ph + 32.0
    );
    let y = top + ph + 52.0;
    for (k, arm) in Arm::ALL.iter().enumerate() {
        let lx = left + k as f64 * 180.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLOURS[k],
            lx + 18.0,
            y + 10.0,
            arm.name()
        );
    }
    s.push_str("</svg>");
    s
}

fn axes(s: &mut String, x0: f64, top: f64, pw: f64, ph: f64, ymax: f64, unit: &str) {
    let _ = write!(
        s,
        r#"<line x1="{x0}" y1="{b}" x2="{}" y2="{b}" stroke="black"/><line x1="{x0}" y1="{top}" x2="{x0}" y2="{b}" stroke="black"/>"#,
        x0 + pw,
        b = top + ph
    );
    for k in 0..=4 {
        let v = ymax * k as f64 / 4.0;
        let y = top + ph - ph * k as f64 / 4.0;
        let _ = write!(
            s,
            r#"<line x1="{}" y1="{y:.1}" x2="{x0}" y2="{y:.1}" stroke="black"/><text x="{}" y="{:.1}" text-anchor="end" font-size="10">{v:.1}{unit}</text>"#,
            x0 - 4.0,
            x0 - 6.0,
            y + 3.0
        );
    }
}

/// A panel of one line per arm: `f` of each summary against offered load.
#[allow(clippy::too_many_arguments)]
fn lines(
    s: &mut String,
    pts: &[&Summary],
    x0: f64,
    top: f64,
    pw: f64,
    ph: f64,
    title: &str,
    unit: &str,
    f: fn(&Summary) -> f64,
) {
    let loads: Vec<f64> = {
        let mut l: Vec<f64> = pts.iter().map(|x| x.load).collect();
        l.sort_by(f64::total_cmp);
        l.dedup();
        l
    };
    let ymax = pts.iter().map(|x| f(x)).fold(1.0, f64::max) * 1.1;
    let _ = write!(s, r#"<text x="{}" y="18" text-anchor="middle" font-weight="bold">{title}</text>"#, x0 + pw / 2.0);
    axes(s, x0, top, pw, ph, ymax, unit);
    let xs = |l: f64| {
        if loads.len() < 2 {
            x0 + pw / 2.0
        } else {
            x0 + 20.0 + (pw - 40.0) * (l - loads[0]) / (loads[loads.len() - 1] - loads[0])
        }
    };
    for &l in &loads {
        let _ = write!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{l}</text>"#, xs(l), top + ph + 16.0);
    }
    let _ =
        write!(s, r#"<text x="{}" y="{}" text-anchor="middle">offered load</text>"#, x0 + pw / 2.0, top + ph + 32.0);
    for (k, arm) in Arm::ALL.iter().enumerate() {
        let mut line: Vec<(f64, f64)> =
            pts.iter().filter(|x| x.arm == *arm).map(|x| (xs(x.load), top + ph - ph * f(x) / ymax)).collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = line.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" "),
            c = COLOURS[k]
        );
        for (x, y) in line {
            let _ = write!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"/>"#, COLOURS[k]);
        }
    }
}
