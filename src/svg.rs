//! Charts for the report, as inline SVG text.
//!
//! Written by hand: the charts are five fixed shapes (a flow diagram, a
//! forest plot, step curves with a numbers-at-risk table, a line chart and
//! bars), and what matters is that the bytes are deterministic,
//! self-contained and readable in print. The maintained Rust plotting crate,
//! plotters, lays text out through its `ttf` feature (font-kit, ttf-parser,
//! the system's fontconfig) or a font file registered at run time, so its
//! SVG would depend on the fonts of the machine that drew it; and it has no
//! flow diagram or at-risk table, which would be drawn by hand anyway. A
//! few hundred lines of string formatting do exactly what the report needs,
//! leaving text to the viewer's fonts.
//!
//! Every function takes plain values and never panics: empty or degenerate
//! input draws an empty frame with a note, and every coordinate written is
//! finite.

use std::fmt::Write;

const FONT: &str = "font-family=\"Helvetica, Arial, sans-serif\"";
/// Colours for arms, in arm order (colour-blind safe, and distinct in greyscale).
pub const ARM_COLOURS: [&str; 4] = ["#0072B2", "#D55E00", "#009E73", "#555555"];

/// Escapes text for SVG and HTML. Characters XML 1.0 does not allow at all
/// (control characters other than tab and newlines, U+FFFE, U+FFFF) are
/// dropped, since no escape can carry them.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with two decimals; non-finite values become 0.
fn c(x: f64) -> String {
    if x.is_finite() { format!("{:.2}", x) } else { "0.00".into() }
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, size: u32, weight: &str, s: &str) {
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"{size}\" font-weight=\"{weight}\" {FONT}>{}</text>",
        c(x),
        c(y),
        esc(s)
    );
}

/// A straight line from `from` to `to`, stroked as `style` (its attributes) says.
fn line(out: &mut String, from: (f64, f64), to: (f64, f64), style: &str) {
    let _ = writeln!(
        out,
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {style}/>",
        c(from.0),
        c(from.1),
        c(to.0),
        c(to.1)
    );
}

fn open(width: f64, height: f64, title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">\n<title>{}</title>\n",
        c(width),
        c(height),
        c(width),
        c(height),
        esc(title),
        esc(title)
    )
}

/// One box of the CONSORT diagram: a heading and lines of detail.
#[derive(Debug, Clone)]
pub struct FlowBox {
    /// Heading, e.g. "Allocated to IPS (n = 2411)".
    pub heading: String,
    /// Detail lines.
    pub lines: Vec<String>,
}

/// The CONSORT flow: enrolment boxes, then one column per arm.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Assessed for eligibility.
    pub assessed: FlowBox,
    /// Excluded, with reasons (beside the main line).
    pub excluded: FlowBox,
    /// Randomised.
    pub randomised: FlowBox,
    /// Per arm, top to bottom: allocation, follow-up, analysis.
    pub arms: Vec<Vec<FlowBox>>,
}

/// The CONSORT flow diagram.
pub fn consort(flow: &Flow) -> String {
    let cols = flow.arms.len().max(1) as f64;
    let col_w = 300.0;
    let width = (cols * (col_w + 20.0) + 20.0).max(660.0);
    let line_h = 15.0;
    let box_h = |b: &FlowBox| 28.0 + line_h * b.lines.len() as f64;
    let rows = flow.arms.iter().map(Vec::len).max().unwrap_or(0);
    let row_heights: Vec<f64> =
        (0..rows).map(|r| flow.arms.iter().filter_map(|col| col.get(r)).map(box_h).fold(0.0, f64::max)).collect();
    let top_h = box_h(&flow.assessed).max(box_h(&flow.excluded));
    let height =
        20.0 + top_h + 30.0 + box_h(&flow.randomised) + 30.0 + row_heights.iter().map(|h| h + 30.0).sum::<f64>() + 10.0;
    let mut s = open(width, height, "CONSORT flow diagram");
    s.push_str("<defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"7\" refY=\"4\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#333\"/></marker></defs>\n");
    let draw = |s: &mut String, x: f64, y: f64, w: f64, b: &FlowBox| {
        let h = box_h(b);
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#fff\" stroke=\"#333\"/>",
            c(x),
            c(y),
            c(w),
            c(h)
        );
        text(s, x + 8.0, y + 18.0, "start", 12, "bold", &b.heading);
        for (i, l) in b.lines.iter().enumerate() {
            text(s, x + 8.0, y + 34.0 + line_h * i as f64, "start", 11, "normal", l);
        }
        h
    };
    let arrow = |s: &mut String, x1: f64, y1: f64, x2: f64, y2: f64| {
        line(s, (x1, y1), (x2, y2), "stroke=\"#333\" marker-end=\"url(#arrow)\"");
    };
    let main_w = 300.0;
    let mid = width / 2.0;
    let mut y = 20.0;
    let h = draw(&mut s, mid - main_w - 10.0, y, main_w, &flow.assessed);
    draw(&mut s, mid + 10.0, y, main_w, &flow.excluded);
    arrow(&mut s, mid - 10.0, y + h / 2.0, mid + 8.0, y + h / 2.0);
    arrow(&mut s, mid - main_w / 2.0 - 10.0, y + h, mid - main_w / 2.0 - 10.0, y + top_h + 28.0);
    y += top_h + 30.0;
    let rh = draw(&mut s, mid - main_w - 10.0, y, main_w, &flow.randomised);
    let from = (mid - main_w / 2.0 - 10.0, y + rh);
    y += rh + 30.0;
    let x0 = (width - cols * (col_w + 20.0) + 20.0) / 2.0;
    for (k, col) in flow.arms.iter().enumerate() {
        let x = x0 + k as f64 * (col_w + 20.0);
        arrow(&mut s, from.0, from.1, x + col_w / 2.0, y - 2.0);
        let mut yy = y;
        for (r, b) in col.iter().enumerate() {
            draw(&mut s, x, yy, col_w, b);
            if r + 1 < col.len() {
                arrow(&mut s, x + col_w / 2.0, yy + box_h(b), x + col_w / 2.0, yy + row_heights[r] + 28.0);
            }
            yy += row_heights[r] + 30.0;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// One row of a forest plot.
#[derive(Debug, Clone)]
pub struct ForestRow {
    /// Label, e.g. "employment status: in work".
    pub label: String,
    /// Estimate and interval, if estimable.
    pub estimate: Option<(f64, f64, f64)>,
    /// Text shown at the right (e.g. "+12.9 (5.3 to 20.3)" or "not estimable").
    pub note: String,
}

/// A forest plot: each row's estimate with its CI whiskers, a reference line
/// at `reference`, and an axis labelled `unit`.
pub fn forest(title: &str, rows: &[ForestRow], reference: f64, unit: &str) -> String {
    let label_w = 230.0;
    let plot_w = 330.0;
    let note_w = 190.0;
    let row_h = 24.0;
    let width = label_w + plot_w + note_w + 20.0;
    let height = 50.0 + row_h * rows.len().max(1) as f64 + 50.0;
    let mut s = open(width, height, title);
    text(&mut s, 10.0, 20.0, "start", 13, "bold", title);
    let (mut lo, mut hi) = (reference, reference);
    for r in rows {
        if let Some((e, l, h)) = r.estimate
            && e.is_finite()
            && l.is_finite()
            && h.is_finite()
        {
            lo = lo.min(l).min(e);
            hi = hi.max(h).max(e);
        }
    }
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |v: f64| label_w + (v - lo) / (hi - lo) * plot_w;
    let top = 40.0;
    let bottom = top + row_h * rows.len().max(1) as f64;
    line(&mut s, (x(reference), top), (x(reference), bottom), "stroke=\"#888\" stroke-dasharray=\"4 3\"");
    if rows.is_empty() {
        text(&mut s, label_w + plot_w / 2.0, top + 16.0, "middle", 11, "normal", "no subgroups");
    }
    for (i, r) in rows.iter().enumerate() {
        let yc = top + row_h * (i as f64 + 0.5);
        text(&mut s, 10.0, yc + 4.0, "start", 11, "normal", &r.label);
        text(&mut s, label_w + plot_w + 10.0, yc + 4.0, "start", 11, "normal", &r.note);
        if let Some((e, l, h)) = r.estimate
            && e.is_finite()
            && l.is_finite()
            && h.is_finite()
        {
            line(&mut s, (x(l), yc), (x(h), yc), "stroke=\"#000\"");
            for v in [l, h] {
                line(&mut s, (x(v), yc - 4.0), (x(v), yc + 4.0), "stroke=\"#000\"");
            }
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"8\" height=\"8\" fill=\"#000\"/>",
                c(x(e) - 4.0),
                c(yc - 4.0)
            );
        }
    }
    axis(&mut s, lo, hi, label_w, plot_w, bottom, unit);
    s.push_str("</svg>\n");
    s
}

/// A horizontal axis from `lo` to `hi` drawn at `y`, with ticks and a label.
fn axis(s: &mut String, lo: f64, hi: f64, x0: f64, w: f64, y: f64, label: &str) {
    line(s, (x0, y), (x0 + w, y), "stroke=\"#000\"");
    for t in ticks(lo, hi) {
        let xt = x0 + (t - lo) / (hi - lo) * w;
        line(s, (xt, y), (xt, y + 4.0), "stroke=\"#000\"");
        text(s, xt, y + 16.0, "middle", 10, "normal", &tick_label(t));
    }
    text(s, x0 + w / 2.0, y + 32.0, "middle", 11, "normal", label);
}

/// "Nice" ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about five of them.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return Vec::new();
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|st| *st >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 20 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn tick_label(t: f64) -> String {
    let s = format!("{t:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// One arm's step curve: (time, value) points after each step, starting at (0, start).
#[derive(Debug, Clone)]
pub struct Series {
    /// Arm label.
    pub label: String,
    /// Points in time order.
    pub points: Vec<(f64, f64)>,
}

/// Kaplan–Meier curves with a numbers-at-risk table: `at_risk[k][j]` is arm
/// k's number at risk at `risk_times[j]`.
pub fn kaplan_meier(
    title: &str,
    series: &[Series],
    x_max: f64,
    risk_times: &[f64],
    at_risk: &[Vec<usize>],
    x_label: &str,
    y_label: &str,
) -> String {
    let (left, plot_w, plot_h, top) = (150.0, 480.0, 240.0, 40.0);
    let width = left + plot_w + 40.0;
    let table_top = top + plot_h + 50.0;
    let height = table_top + 24.0 + 18.0 * series.len() as f64 + 10.0;
    let mut s = open(width, height, title);
    text(&mut s, 10.0, 20.0, "start", 13, "bold", title);
    let x_max = if x_max.is_finite() && x_max > 0.0 { x_max } else { 1.0 };
    let x = |t: f64| left + (t / x_max).clamp(0.0, 1.0) * plot_w;
    let y = |v: f64| top + (1.0 - v.clamp(0.0, 1.0)) * plot_h;
    line(&mut s, (left, top), (left, top + plot_h), "stroke=\"#000\"");
    for v in [0.0, 0.25, 0.5, 0.75, 1.0] {
        line(&mut s, (left - 4.0, y(v)), (left, y(v)), "stroke=\"#000\"");
        text(&mut s, left - 8.0, y(v) + 4.0, "end", 10, "normal", &tick_label(v));
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" transform=\"rotate(-90 {} {})\" {FONT}>{}</text>",
        c(left - 40.0),
        c(top + plot_h / 2.0),
        c(left - 40.0),
        c(top + plot_h / 2.0),
        esc(y_label)
    );
    axis(&mut s, 0.0, x_max, left, plot_w, top + plot_h, x_label);
    if series.iter().all(|se| se.points.is_empty()) {
        text(&mut s, left + plot_w / 2.0, top + plot_h / 2.0, "middle", 11, "normal", "no follow-up yet");
    }
    for (k, se) in series.iter().enumerate() {
        let colour = ARM_COLOURS[k % ARM_COLOURS.len()];
        let mut d = format!("M{},{}", c(x(0.0)), c(y(1.0)));
        let mut last = 1.0;
        for &(t, v) in &se.points {
            if !(t.is_finite() && v.is_finite()) {
                continue;
            }
            let _ = write!(d, " L{},{} L{},{}", c(x(t)), c(y(last)), c(x(t)), c(y(v)));
            last = v;
        }
        let _ = write!(d, " L{},{}", c(x(x_max)), c(y(last)));
        let dash = if k == 1 { " stroke-dasharray=\"6 3\"" } else { "" };
        let _ = writeln!(s, "<path d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>");
        let ly = top + 14.0 + 16.0 * k as f64;
        line(
            &mut s,
            (left + plot_w - 150.0, ly),
            (left + plot_w - 125.0, ly),
            &format!("stroke=\"{colour}\" stroke-width=\"2\"{dash}"),
        );
        text(&mut s, left + plot_w - 120.0, ly + 4.0, "start", 11, "normal", &se.label);
    }
    text(&mut s, 10.0, table_top + 4.0, "start", 11, "bold", "Number at risk");
    for (k, se) in series.iter().enumerate() {
        let ry = table_top + 22.0 + 18.0 * k as f64;
        text(&mut s, 10.0, ry, "start", 11, "normal", &se.label);
        for (j, &t) in risk_times.iter().enumerate() {
            let n = at_risk.get(k).and_then(|r| r.get(j)).copied().unwrap_or(0);
            text(&mut s, x(t), ry, "middle", 11, "normal", &n.to_string());
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Lines over time (e.g. cumulative recruitment per arm); x values are day
/// numbers from `origin`, labelled with `x_labels` at their positions.
pub fn lines(title: &str, series: &[Series], x_labels: &[(f64, String)], y_label: &str) -> String {
    let (left, plot_w, plot_h, top) = (70.0, 520.0, 220.0, 40.0);
    let width = left + plot_w + 180.0;
    let height = top + plot_h + 60.0;
    let mut s = open(width, height, title);
    text(&mut s, 10.0, 20.0, "start", 13, "bold", title);
    let xs = series.iter().flat_map(|se| se.points.iter().map(|p| p.0)).filter(|v| v.is_finite());
    let x_max = xs.fold(1.0, f64::max);
    let y_max =
        series.iter().flat_map(|se| se.points.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(1.0, f64::max);
    let x = |t: f64| left + (t / x_max).clamp(0.0, 1.0) * plot_w;
    let y = |v: f64| top + (1.0 - (v / y_max).clamp(0.0, 1.0)) * plot_h;
    line(&mut s, (left, top), (left, top + plot_h), "stroke=\"#000\"");
    line(&mut s, (left, top + plot_h), (left + plot_w, top + plot_h), "stroke=\"#000\"");
    for t in ticks(0.0, y_max) {
        text(&mut s, left - 6.0, y(t) + 4.0, "end", 10, "normal", &tick_label(t));
        line(&mut s, (left, y(t)), (left + plot_w, y(t)), "stroke=\"#ddd\"");
    }
    for (t, l) in x_labels {
        text(&mut s, x(*t), top + plot_h + 16.0, "middle", 10, "normal", l);
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\" transform=\"rotate(-90 {} {})\" {FONT}>{}</text>",
        c(20.0),
        c(top + plot_h / 2.0),
        c(20.0),
        c(top + plot_h / 2.0),
        esc(y_label)
    );
    for (k, se) in series.iter().enumerate() {
        let colour = ARM_COLOURS[k % ARM_COLOURS.len()];
        let pts: Vec<String> = se
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(t, v)| format!("{},{}", c(x(t)), c(y(v))))
            .collect();
        if !pts.is_empty() {
            let dash = if k == 1 { " stroke-dasharray=\"6 3\"" } else { "" };
            let _ = writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                pts.join(" ")
            );
        }
        let last = se.points.iter().rev().map(|p| p.1).find(|v| v.is_finite()).unwrap_or(0.0);
        text(
            &mut s,
            left + plot_w + 10.0,
            y(last) + 4.0 + 14.0 * k as f64,
            "start",
            11,
            "normal",
            &format!("{} ({})", se.label, tick_label(last)),
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Horizontal bars: one per row, `value` from zero, labelled and with the
/// value written beside the bar; for balance by stratum (difference between arms).
pub fn bars(title: &str, rows: &[(String, f64)], x_label: &str) -> String {
    let rows: Vec<(String, f64, String)> = rows.iter().map(|(l, v)| (l.clone(), *v, signed(*v))).collect();
    bars_with_notes(title, &rows, x_label)
}

/// One stratum's participants per arm, in arm order.
#[derive(Debug, Clone)]
pub struct BalanceRow {
    /// Stratum label, e.g. `site=sheffield|employment_status=in_work|condition=msk`.
    pub stratum: String,
    /// Participants per arm.
    pub counts: Vec<u64>,
}

/// Balance by stratum: per stratum a bar of the first arm's count minus the
/// second's (with more arms, the largest minus the smallest), and beside it
/// the difference and every arm's count, e.g. `+1 (45 vs 44)`; the title
/// should name the arms in `counts` order.
pub fn balance(title: &str, rows: &[BalanceRow], x_label: &str) -> String {
    let rows: Vec<(String, f64, String)> = rows
        .iter()
        .map(|r| {
            let d = match r.counts.as_slice() {
                [a, b] => *a as f64 - *b as f64,
                c => (c.iter().max().copied().unwrap_or(0) - c.iter().min().copied().unwrap_or(0)) as f64,
            };
            let counts: Vec<String> = r.counts.iter().map(u64::to_string).collect();
            (r.stratum.clone(), d, format!("{} ({})", signed(d), counts.join(" vs ")))
        })
        .collect();
    bars_with_notes(title, &rows, x_label)
}

/// `+3`, `0`, `-2`.
fn signed(v: f64) -> String {
    if !v.is_finite() {
        String::new()
    } else if v > 0.0 {
        format!("+{}", tick_label(v))
    } else {
        tick_label(v)
    }
}

fn bars_with_notes(title: &str, rows: &[(String, f64, String)], x_label: &str) -> String {
    let (label_w, plot_w, row_h) = (330.0, 300.0, 14.0);
    let note_w = rows.iter().map(|r| r.2.chars().count()).max().unwrap_or(0) as f64 * 5.5;
    let width = label_w + plot_w + 20.0 + note_w.max(50.0);
    let height = 50.0 + row_h * rows.len().max(1) as f64 + 45.0;
    let mut s = open(width, height, title);
    text(&mut s, 10.0, 20.0, "start", 13, "bold", title);
    let m = rows.iter().map(|r| r.1.abs()).filter(|v| v.is_finite()).fold(1.0, f64::max);
    let x = |v: f64| label_w + plot_w / 2.0 + (v / m).clamp(-1.0, 1.0) * plot_w / 2.0;
    let top = 36.0;
    if rows.is_empty() {
        text(&mut s, label_w + plot_w / 2.0, top + 12.0, "middle", 11, "normal", "no strata yet");
    }
    for (i, (label, v, note)) in rows.iter().enumerate() {
        let yy = top + row_h * i as f64;
        text(&mut s, label_w - 6.0, yy + 10.0, "end", 9, "normal", label);
        let (a, b) = (x(0.0).min(x(*v)), x(0.0).max(x(*v)));
        let _ = writeln!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#0072B2\"/>",
            c(a),
            c(yy + 2.0),
            c((b - a).max(0.5)),
            c(row_h - 4.0)
        );
        if !note.is_empty() {
            text(&mut s, label_w + plot_w + 8.0, yy + 10.0, "start", 9, "normal", note);
        }
    }
    let bottom = top + row_h * rows.len().max(1) as f64;
    line(&mut s, (x(0.0), top), (x(0.0), bottom), "stroke=\"#000\"");
    axis(&mut s, -m, m, label_w, plot_w, bottom, x_label);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses the SVG as XML (roxmltree refuses anything not well-formed)
    /// and checks that every coordinate attribute is a finite number list.
    fn well_formed(svg: &str) -> roxmltree::Document<'_> {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not well-formed XML: {e}\n{svg}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        for node in doc.descendants().filter(|n| n.is_element()) {
            for a in node.attributes() {
                if ["x", "y", "x1", "y1", "x2", "y2", "width", "height", "points", "d", "transform", "viewBox"]
                    .contains(&a.name())
                {
                    let v = a.value();
                    assert!(!v.contains("NaN") && !v.contains("inf"), "{} = {v:?}", a.name());
                    let numbers = v
                        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                        .filter(|t| !t.is_empty() && *t != "-");
                    for n in numbers {
                        assert!(n.parse::<f64>().is_ok_and(f64::is_finite), "{} = {v:?}", a.name());
                    }
                }
            }
        }
        doc
    }

    /// All the text a reader sees, joined by newlines.
    fn texts(svg: &str) -> Vec<String> {
        let doc = well_formed(svg);
        doc.descendants().filter(|n| n.has_tag_name("text")).map(|n| n.text().unwrap_or("").to_string()).collect()
    }

    fn flow() -> Flow {
        let b = |h: &str, lines: &[&str]| FlowBox {
            heading: h.into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
        };
        Flow {
            assessed: b("Assessed for eligibility (n = 6000)", &[]),
            excluded: b("Excluded (n = 1090)", &["Ineligible (n = 600)", "Declined (n = 490)"]),
            randomised: b("Randomised (n = 4910)", &[]),
            arms: vec![
                vec![
                    b("Allocated to IPS (n = 2455)", &["Received IPS (n = 2100)"]),
                    b("Lost to follow-up (n = 90)", &["Withdrew (n = 30)", "Died (n = 2)"]),
                    b("Analysed (n = 2455)", &[]),
                ],
                vec![
                    b("Allocated to usual care (n = 2455)", &[]),
                    b("Lost to follow-up (n = 85)", &[]),
                    b("Analysed (n = 2455)", &[]),
                ],
            ],
        }
    }

    #[test]
    fn the_consort_diagram_has_every_box_and_an_arrow_between_steps() {
        let f = flow();
        let svg = consort(&f);
        assert_eq!(svg, consort(&f));
        let t = texts(&svg);
        for needle in [
            "Assessed for eligibility (n = 6000)",
            "Ineligible (n = 600)",
            "Randomised (n = 4910)",
            "Allocated to IPS (n = 2455)",
            "Received IPS (n = 2100)",
            "Died (n = 2)",
            "Allocated to usual care (n = 2455)",
        ] {
            assert!(t.iter().any(|x| x == needle), "{needle}");
        }
        // Assessed → excluded, assessed → randomised, randomised → each arm, and two per arm column.
        assert_eq!(svg.matches("marker-end=\"url(#arrow)\"").count(), 2 + 2 + 2 * 2);
        assert_eq!(svg.matches("<rect").count(), 3 + 6);
    }

    #[test]
    fn the_forest_plot_shows_rows_whiskers_reference_and_axis() {
        let rows = vec![
            ForestRow {
                label: "in work".into(),
                estimate: Some((12.9, 5.3, 20.3)),
                note: "+12.9 (5.3 to 20.3)".into(),
            },
            ForestRow {
                label: "out of work".into(),
                estimate: Some((2.1, -1.0, 5.2)),
                note: "+2.1 (-1.0 to 5.2)".into(),
            },
            ForestRow { label: "both".into(), estimate: None, note: "not estimable".into() },
        ];
        let a = forest("Subgroups", &rows, 0.0, "risk difference (percentage points)");
        assert_eq!(a, forest("Subgroups", &rows, 0.0, "risk difference (percentage points)"));
        let t = texts(&a);
        for needle in
            ["in work", "+12.9 (5.3 to 20.3)", "not estimable", "risk difference (percentage points)", "0", "10", "20"]
        {
            assert!(t.iter().any(|x| x == needle), "{needle}: {t:?}");
        }
        // Two estimable rows: a square each; the reference line is dashed.
        assert_eq!(a.matches("width=\"8\" height=\"8\"").count(), 2);
        assert_eq!(a.matches("stroke-dasharray").count(), 1);
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(-3.0, 3.0), vec![-2.0, 0.0, 2.0]);
        assert_eq!(ticks(0.0, 0.9).into_iter().map(tick_label).collect::<Vec<_>>(), ["0", "0.2", "0.4", "0.6", "0.8"]);
    }

    #[test]
    fn kaplan_meier_steps_with_numbers_at_risk_and_axis_labels() {
        let series = vec![
            Series { label: "IPS".into(), points: vec![(30.0, 0.9), (120.0, 0.7), (300.0, 0.55)] },
            Series { label: "usual care".into(), points: vec![(60.0, 0.85), (200.0, 0.75)] },
        ];
        let risk = [0.0, 90.0, 180.0, 270.0, 365.0];
        let at_risk = vec![vec![2455, 2101, 1702, 1433, 1350], vec![2455, 2290, 2011, 1876, 1801]];
        let draw = || {
            kaplan_meier(
                "Time to first job",
                &series,
                365.0,
                &risk,
                &at_risk,
                "days since randomisation",
                "without a job",
            )
        };
        let svg = draw();
        assert_eq!(svg, draw());
        let t = texts(&svg);
        for needle in
            ["Number at risk", "IPS", "usual care", "2455", "1350", "1801", "days since randomisation", "without a job"]
        {
            assert!(t.iter().any(|x| x == needle), "{needle}");
        }
        assert_eq!(svg.matches("<path").count(), 2);
    }

    #[test]
    fn recruitment_lines_and_balance_bars_carry_their_numbers() {
        let series = vec![
            Series { label: "ips".into(), points: vec![(0.0, 1.0), (10.0, 40.0), (300.0, 2455.0)] },
            Series { label: "usual_care".into(), points: vec![(0.0, 1.0), (300.0, 2455.0)] },
        ];
        let labels = vec![(0.0, "2018-05-01".to_string()), (300.0, "2019-10-31".to_string())];
        let svg = lines("Cumulative randomisations", &series, &labels, "participants");
        assert_eq!(svg, lines("Cumulative randomisations", &series, &labels, "participants"));
        let t = texts(&svg);
        for needle in ["ips (2455)", "usual_care (2455)", "2018-05-01", "2019-10-31", "participants"] {
            assert!(t.iter().any(|x| x == needle), "{needle}");
        }
        let rows =
            vec![("site=sheffield|condition=msk".to_string(), 2.0), ("site=dudley|condition=both".to_string(), -1.0)];
        let svg = bars("Balance by stratum", &rows, "difference in participants");
        let t = texts(&svg);
        for needle in ["site=sheffield|condition=msk", "+2", "-1", "difference in participants"] {
            assert!(t.iter().any(|x| x == needle), "{needle}");
        }
    }

    #[test]
    fn balance_shows_each_strata_counts_and_difference() {
        let rows = vec![
            BalanceRow { stratum: "site=sheffield".into(), counts: vec![45, 44] },
            BalanceRow { stratum: "site=dudley".into(), counts: vec![20, 22] },
            BalanceRow { stratum: "three arms".into(), counts: vec![5, 7, 6] },
            BalanceRow { stratum: "empty".into(), counts: vec![] },
        ];
        let svg = balance("Balance by stratum: ips minus usual_care", &rows, "difference in participants");
        assert_eq!(svg, balance("Balance by stratum: ips minus usual_care", &rows, "difference in participants"));
        let t = texts(&svg);
        for needle in [
            "site=sheffield",
            "+1 (45 vs 44)",
            "-2 (20 vs 22)",
            "+2 (5 vs 7 vs 6)",
            "0 ()",
            "difference in participants",
        ] {
            assert!(t.iter().any(|x| x == needle), "{needle}: {t:?}");
        }
        well_formed(&balance("b", &[], "d"));
    }

    #[test]
    fn degenerate_input_draws_a_finite_frame() {
        let empty = Series { label: "x".into(), points: vec![] };
        let one = Series { label: "y".into(), points: vec![(5.0, 0.5)] };
        let bad = Series { label: "z".into(), points: vec![(f64::NAN, 0.5), (3.0, f64::INFINITY)] };
        let zero_width = ForestRow { label: "a".into(), estimate: Some((0.0, 0.0, 0.0)), note: "0 (0 to 0)".into() };
        let nan = ForestRow { label: "b".into(), estimate: Some((f64::NAN, 1.0, f64::INFINITY)), note: "x".into() };
        let outputs = [
            forest("empty", &[], 0.0, "pp"),
            forest("zero-width CI at the reference", std::slice::from_ref(&zero_width), 0.0, "pp"),
            forest(
                "one row away from the reference",
                &[ForestRow { estimate: Some((3.0, 3.0, 3.0)), ..zero_width }],
                0.0,
                "pp",
            ),
            forest("nan", &[nan], 0.0, "pp"),
            kaplan_meier("km", &[], 0.0, &[], &[], "days", "S"),
            kaplan_meier(
                "km",
                &[empty.clone(), one.clone(), bad.clone()],
                365.0,
                &[0.0, 365.0],
                &[vec![3, 1]],
                "days",
                "S",
            ),
            kaplan_meier("km", std::slice::from_ref(&one), f64::NAN, &[f64::NAN], &[vec![1]], "days", "S"),
            lines("l", std::slice::from_ref(&empty), &[], "n"),
            lines("l", &[one.clone(), bad.clone()], &[(f64::NAN, "d".into())], "n"),
            lines("l", &[Series { label: "zeros".into(), points: vec![(0.0, 0.0), (0.0, 0.0)] }], &[], "n"),
            bars("b", &[], "d"),
            bars("b", &[("s".into(), 0.0), ("t".into(), f64::NAN)], "d"),
            consort(&Flow { arms: vec![], ..flow() }),
            consort(&Flow { arms: vec![vec![], vec![FlowBox { heading: "only".into(), lines: vec![] }]], ..flow() }),
        ];
        for svg in &outputs {
            well_formed(svg);
        }
        assert!(texts(&outputs[7]).iter().any(|t| t == "x (0)"));
    }

    #[test]
    fn text_is_escaped_and_never_breaks_the_xml() {
        let label = "a<b & \"c\" 'd' \u{1}\u{7}e\u{FFFF}";
        let svg = forest(
            label,
            &[ForestRow { label: label.into(), estimate: None, note: "</text><script>".into() }],
            0.0,
            label,
        );
        let t = texts(&svg);
        assert!(t.iter().any(|x| x == "a<b & \"c\" 'd' e"), "{t:?}");
        assert!(t.iter().any(|x| x == "</text><script>"));
        assert!(!svg.contains("<script"));
        let mut f = flow();
        f.assessed.heading = label.into();
        well_formed(&consort(&f));
        well_formed(&bars(label, &[(label.into(), 1.0)], label));
        well_formed(&lines(
            label,
            &[Series { label: label.into(), points: vec![(1.0, 1.0)] }],
            &[(1.0, label.into())],
            label,
        ));
        well_formed(&kaplan_meier(
            label,
            &[Series { label: label.into(), points: vec![] }],
            1.0,
            &[0.0],
            &[vec![1]],
            label,
            label,
        ));
    }
}
