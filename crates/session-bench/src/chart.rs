//! The chart beside BENCHMARKS.md: each library operation's p50 latency as a bar, with the
//! raw redis-rs baseline it is divided by right below it, section by section, as SVG.
//!
//! Drawn with plotters' SVG backend only (no font files: text widths are estimated, and the
//! viewer's sans-serif font renders the labels).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::BoxResult;
use crate::report::{Row, fmt_us};

/// The library's bars.
const LIBRARY: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
/// The baselines' bars.
const BASELINE: RGBColor = RGBColor(0xa0, 0xa8, 0xb0);
const WIDTH: u32 = 1100;
/// Height of one line: a section heading, or an operation with its baseline.
const LINE: u32 = 34;
/// The title and the legend above the chart.
const HEADER: u32 = 58;
/// The x axis' labels and description below the chart.
const X_AXIS: u32 = 46;
/// The y extent of one line (y is an integer coordinate).
const UNIT: i32 = 100;
const FONT: &str = "sans-serif";
/// The labels' size as plotters takes it (its SVG backend writes 1/1.24 of it: about 12 px),
/// and a generous width per character at that size (the SVG backend cannot measure text; a
/// label wider than its area would be cut at the image's left edge).
const LABEL_SIZE: u32 = 15;
const LABEL_CHAR_PX: f64 = 7.0;
/// The values beside the bars, and the title.
const VALUE_SIZE: u32 = 14;
const TITLE_SIZE: u32 = 20;

/// One operation and the raw baseline it is compared with.
#[derive(Debug)]
pub(crate) struct Pair<'a> {
    pub(crate) op: &'a Row,
    pub(crate) baseline: &'a Row,
}

/// One line of the chart, top to bottom.
#[derive(Debug)]
enum Line<'a> {
    Heading(&'a str),
    Pair(Pair<'a>),
}

/// The rows the chart shows: latency rows of the library whose baseline is a raw client row
/// of the same group (key `<group>.raw...`: raw redis-rs, or the raw pool), with both p50s
/// measured. Peers, throughput and the library-against-itself comparisons stay in the tables.
pub(crate) fn pairs(rows: &[Row]) -> Vec<Pair<'_>> {
    rows.iter()
        .filter_map(|op| {
            let baseline = rows.iter().find(|r| Some(&r.key) == op.baseline.as_ref())?;
            let (group, _) = op.key.split_once('.')?;
            let (base_group, base_name) = baseline.key.split_once('.')?;
            let measured =
                |r: &Row| r.ops_per_s.is_none() && r.latency.is_some_and(|l| l.p50_us > 0.0);
            (group == base_group
                && base_name.starts_with("raw")
                && measured(op)
                && measured(baseline))
            .then_some(Pair { op, baseline })
        })
        .collect()
}

/// The lines: a heading per section, then its pairs, in the order the rows came.
fn lines<'a>(pairs: Vec<Pair<'a>>) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    let mut section: Option<&str> = None;
    for pair in pairs {
        if section != Some(pair.op.section.as_str()) {
            section = Some(pair.op.section.as_str());
            lines.push(Line::Heading(&pair.op.section));
        }
        lines.push(Line::Pair(pair));
    }
    lines
}

fn p50(row: &Row) -> f64 {
    row.latency.map_or(0.0, |l| l.p50_us)
}

/// The chart as an SVG document, `title` on top; `None` when no row has a raw baseline (a run
/// with `--only` of other sections).
pub(crate) fn svg(rows: &[Row], title: &str) -> BoxResult<Option<String>> {
    let lines = lines(pairs(rows));
    if lines.is_empty() {
        return Ok(None);
    }
    let n = lines.len();
    let label = |line: &Line<'_>| match line {
        Line::Heading(_) => String::new(),
        Line::Pair(pair) => pair.op.name.clone(),
    };
    let longest = lines
        .iter()
        .map(|l| label(l).chars().count())
        .max()
        .unwrap_or(0);
    let label_area = (longest as f64 * LABEL_CHAR_PX) as u32 + 24;
    let height = HEADER + X_AXIS + LINE * n as u32 + 10;
    let widest = lines
        .iter()
        .filter_map(|l| match l {
            Line::Pair(p) => Some(p50(p.op).max(p50(p.baseline))),
            Line::Heading(_) => None,
        })
        .fold(0.0, f64::max);
    // Room right of the longest bar for its value and the baseline's name.
    let x_max = widest * 1.7;
    // Line i (0 on top) spans y in [UNIT * (n - i - 1), UNIT * (n - i)]; its centre is a key
    // point (where its label goes). Integers: plotters formats custom key points of those.
    let top_y = i32::try_from(n).map_err(|_| "too many lines for a chart")? * UNIT;
    let centre = |i: usize| top_y - UNIT * i as i32 - UNIT / 2;
    let line_at = |y: i32| {
        usize::try_from((top_y - UNIT / 2 - y) / UNIT)
            .ok()
            .and_then(|i| lines.get(i))
    };

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, body) = root.split_vertically(HEADER);
        top.draw(&Text::new(
            title.to_owned(),
            (12, 8),
            (FONT, TITLE_SIZE).into_font().color(&BLACK),
        ))?;
        let legend = (FONT, LABEL_SIZE).into_font().color(&BLACK);
        let mut x = 12;
        for (colour, text) in [
            (LIBRARY, "this library: p50, and its ratio to the baseline"),
            (
                BASELINE,
                "its raw baseline in the same run: p50, and what it is",
            ),
        ] {
            top.draw(&Rectangle::new([(x, 36), (x + 14, 48)], colour.filled()))?;
            top.draw(&Text::new(text, (x + 20, 35), legend.clone()))?;
            x += 20 + (text.chars().count() as f64 * LABEL_CHAR_PX) as i32 + 28;
        }

        let mut chart = ChartBuilder::on(&body)
            .margin_right(16)
            .margin_bottom(6)
            .x_label_area_size(X_AXIS)
            .y_label_area_size(label_area)
            .build_cartesian_2d(
                0f64..x_max,
                // Key points (ticks and labels) on the operations only: headings are drawn
                // inside the chart.
                (0..top_y).with_key_points(
                    (0..n)
                        .filter(|i| matches!(lines[*i], Line::Pair(_)))
                        .map(centre)
                        .collect(),
                ),
            )?;
        let format_label = |y: &i32| line_at(*y).map(label).unwrap_or_default();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("p50 µs per operation (lower is better)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&format_label)
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, LABEL_SIZE))
            .max_light_lines(0)
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;

        let value = |x: f64, y: i32, text: String| {
            Text::new(
                text,
                (x + widest * 0.01, y),
                (FONT, VALUE_SIZE)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        };
        let heading_style = (FONT, LABEL_SIZE)
            .into_font()
            .style(FontStyle::Bold)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, line) in lines.iter().enumerate() {
            let y = centre(i);
            match line {
                Line::Heading(section) => {
                    chart.draw_series(std::iter::once(Text::new(
                        (*section).to_owned(),
                        (widest * 0.005, y - UNIT / 10),
                        heading_style.clone(),
                    )))?;
                }
                Line::Pair(Pair { op, baseline }) => {
                    let (lib, base) = (p50(op), p50(baseline));
                    let ratio = op.ratio.map(|r| format!(" · {r:.2}x")).unwrap_or_default();
                    chart.draw_series([
                        Rectangle::new([(0.0, y + 2), (lib, y + 36)], LIBRARY.filled()),
                        Rectangle::new([(0.0, y - 36), (base, y - 2)], BASELINE.filled()),
                    ])?;
                    chart.draw_series([
                        value(lib, y + 19, format!("{} µs{ratio}", fmt_us(lib))),
                        value(
                            base,
                            y - 19,
                            format!("{} µs · {}", fmt_us(base), baseline.name),
                        ),
                    ])?;
                }
            }
        }
        root.present()?;
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::{pairs, svg};
    use crate::recorder::Latency;
    use crate::report::{Row, resolve};

    fn latency(p50_us: f64) -> Latency {
        Latency {
            iters: 1,
            p50_us,
            p99_us: p50_us,
            mean_us: p50_us,
            min_us: p50_us,
        }
    }

    fn rows() -> Vec<Row> {
        let mut rows = vec![
            Row::latency(
                "mux10.raw_get",
                "Multiplexed",
                "raw redis-rs GET",
                latency(10.0),
                None,
            ),
            Row::latency("mux10.get", "Multiplexed", "get", latency(20.0), None)
                .vs("mux10.raw_get"),
            Row::latency(
                "mux10.failover_get",
                "Multiplexed",
                "get, failover",
                latency(21.0),
                None,
            )
            .vs("mux10.get"),
            Row::latency(
                "peer10.tower.get",
                "Peers",
                "tower: get",
                latency(30.0),
                None,
            )
            .vs("mux10.raw_get"),
            Row::throughput("tp.raw", "Throughput", "raw", 1000.0, None),
            Row::throughput("tp.lib", "Throughput", "lib", 500.0, None).vs("tp.raw"),
            Row::latency("pool.raw_get", "Pool", "raw GET, pool", latency(12.0), None),
            Row::latency("pool.get", "Pool", "get & <pool>", latency(18.0), None)
                .vs("pool.raw_get"),
        ];
        resolve(&mut rows);
        rows
    }

    #[test]
    fn the_chart_pairs_library_operations_with_their_raw_baselines() {
        let rows = rows();
        let shown: Vec<(&str, &str)> = pairs(&rows)
            .iter()
            .map(|p| (p.op.key.as_str(), p.baseline.key.as_str()))
            .collect();
        assert_eq!(
            shown,
            [("mux10.get", "mux10.raw_get"), ("pool.get", "pool.raw_get")]
        );
    }

    #[test]
    fn the_chart_is_an_svg_with_every_label_escaped() {
        let text = svg(&rows(), "Latency").unwrap().unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80]);
        assert!(text.trim_end().ends_with("</svg>"));
        for label in ["Multiplexed", "Pool", "raw redis-rs GET", "2.00x", "1.50x"] {
            assert!(text.contains(label), "{label} missing");
        }
        assert!(
            text.contains("get &amp; &lt;pool&gt;"),
            "labels are escaped"
        );
        assert!(!text.contains("tower: get"));
    }

    #[test]
    fn no_chart_without_baselines() {
        let rows = vec![Row::latency(
            "list.page",
            "Listing",
            "list_page",
            latency(400.0),
            None,
        )];
        assert!(svg(&rows, "Latency").unwrap().is_none());
    }
}
