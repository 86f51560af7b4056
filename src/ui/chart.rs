//! Charts as inline SVG drawn on the server: no script, readable with
//! JavaScript off, coloured by the stylesheet (classes `series-<name>`).

use maud::{Markup, html};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
/// Room under the bars for the time labels.
const AXIS: f64 = 18.0;

/// One bar: its label (shown every `label_every` bars) and a value per series.
pub struct Bar {
    pub label: String,
    pub values: Vec<f64>,
}

/// Stacked bars, one series per name in `series`, with a legend. `unit`
/// follows each value in the tooltips.
pub fn stacked_bars(title: &str, series: &[&str], bars: &[Bar], label_every: usize, unit: &str) -> Markup {
    let top = bars.iter().map(|b| b.values.iter().sum::<f64>()).fold(0.0, f64::max);
    let scale = if top > 0.0 { (HEIGHT - AXIS) / top } else { 0.0 };
    let slot = WIDTH / bars.len().max(1) as f64;
    html! {
        figure.chart {
            figcaption { (title) " " span.muted { "(highest: " (format_value(top)) " " (unit) ")" } }
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) preserveAspectRatio="none" {
                line.axis x1="0" y1=(HEIGHT - AXIS) x2=(WIDTH) y2=(HEIGHT - AXIS) {}
                @for (i, bar) in bars.iter().enumerate() {
                    @let x = i as f64 * slot;
                    g {
                        title { (bar.label) ": " (tooltip(series, &bar.values, unit)) }
                        // Transparent full-height target, so a tooltip shows on empty hours too.
                        rect.hover x=(x) y="0" width=(slot) height=(HEIGHT - AXIS) {}
                        @for (y, height, name) in stack(&bar.values, series, scale) {
                            rect class={ "series-" (name) } x=(x + slot * 0.1) y=(y) width=(slot * 0.8) height=(height) {}
                        }
                    }
                    @if i % label_every.max(1) == 0 {
                        text.tick x=(x + slot / 2.0) y=(HEIGHT - 4.0) { (bar.label) }
                    }
                }
            }
            ul.legend {
                @for name in series { li { span class={ "swatch series-" (name) } {} (name.replace('_', " ")) } }
            }
        }
    }
}

/// Each non-zero segment's top, height and series, bottom up.
fn stack<'a>(values: &[f64], series: &[&'a str], scale: f64) -> Vec<(f64, f64, &'a str)> {
    let mut base = HEIGHT - AXIS;
    let mut segments = Vec::new();
    for (value, name) in values.iter().zip(series) {
        let height = value * scale;
        if height > 0.0 {
            base -= height;
            segments.push((base, height, *name));
        }
    }
    segments
}

fn tooltip(series: &[&str], values: &[f64], unit: &str) -> String {
    let parts: Vec<String> = series
        .iter()
        .zip(values)
        .map(|(name, v)| format!("{} {} {unit}", name.replace('_', " "), format_value(*v)))
        .collect();
    parts.join(", ")
}

fn format_value(v: f64) -> String {
    if v >= 10.0 || v == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_stack_upwards_and_skip_zeroes() {
        let segments = stack(&[2.0, 0.0, 1.0], &["a", "b", "c"], 10.0);
        let base = HEIGHT - AXIS;
        assert_eq!(segments, vec![(base - 20.0, 20.0, "a"), (base - 30.0, 10.0, "c")]);
    }

    #[test]
    fn the_highest_bar_fills_the_plot() {
        let bars =
            [Bar { label: "a".into(), values: vec![1.0, 3.0] }, Bar { label: "b".into(), values: vec![2.0, 0.0] }];
        let svg = stacked_bars("t", &["x", "y"], &bars, 1, "/min").into_string();
        assert!(svg.contains(&format!("height=\"{}\"", (HEIGHT - AXIS) * 3.0 / 4.0)), "{svg}");
        assert!(svg.contains("highest: 4.00 /min"), "{svg}");
    }
}
