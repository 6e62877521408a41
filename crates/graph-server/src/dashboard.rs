//! The fleet dashboard at `/`: one server-rendered HTML page, no scripts.
//! Per stream: its releases, the update graph as an SVG, rollout progress
//! (the share of the fleet that may take each rollout now); then charts of
//! nodes by version per week and tables by stream, architecture and
//! platform.
//!
//! Rendering is linear in the releases, edges and statistics shown, and
//! what it shows is bounded: the chart and the version table show the
//! versions with the most nodes ([`TOP_VERSIONS`]) and add the rest up as
//! "other", whatever the statistics hold.

use std::collections::BTreeMap;
use std::fmt::Write;

use release::graph::{Scheme, keys};

use crate::state::Snapshot;
use crate::stats::{OTHER, WeekSummary, week_start};

/// Versions shown by name in the chart; the rest are added up as "other".
pub(crate) const TOP_VERSIONS: usize = 7;
/// Versions listed by name in the table of the latest week.
pub(crate) const TOP_VERSIONS_TABLE: usize = 20;
/// Weeks in the chart.
pub(crate) const WEEKS: usize = 12;

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PALETTE: [&str; 8] = [
    "#3c6eb4", "#e07b39", "#5aa55a", "#c94c4c", "#8e6bbf", "#b59b2d", "#3aa6a6", "#7f7f7f",
];

/// Renders the page.
pub(crate) fn render(snap: &Snapshot, arch: &str, weekly: &[WeekSummary], now: i64) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>oxcore update graph</title><style>");
    h.push_str("body{font-family:sans-serif;margin:1.5em;color:#222}h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}");
    h.push_str("table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .6em;font-size:.9em;text-align:left}");
    h.push_str(".bar{background:#eee;width:16em;height:1em;display:inline-block;vertical-align:middle}.fill{background:#e07b39;height:1em}");
    h.push_str(".err{color:#b00}.tag{font-size:.8em;padding:0 .3em;border-radius:.2em;color:#fff}.barrier{background:#3c6eb4}.deadend{background:#c94c4c}.rollout{background:#e07b39}");
    h.push_str("</style></head><body><h1>oxcore update graph</h1>");
    let _ = write!(
        h,
        "<p>Architecture <b>{}</b>. Streams: {}.</p>",
        esc(arch),
        snap.status.len()
    );
    for (stream, st) in &snap.status {
        let _ = write!(h, "<h2 id=\"stream-{0}\">Stream {0}</h2>", esc(stream));
        let _ = write!(h, "<p>{} releases", st.releases);
        if let Some(b) = st.built_at {
            let _ = write!(h, "; graph built {} s ago", now - b);
        }
        h.push_str("</p>");
        if let Some(e) = &st.error {
            let _ = write!(
                h,
                "<p class=\"err\">Last refresh failed (serving the previous graph): {}</p>",
                esc(e)
            );
        }
        for w in &st.warnings {
            let _ = write!(h, "<p class=\"err\">Warning: {}</p>", esc(w));
        }
        let Some(g) = snap
            .graphs
            .get(&(stream.clone(), arch.to_string(), Scheme::Checksum))
        else {
            h.push_str("<p>No graph for this architecture.</p>");
            continue;
        };
        let graph = &g.graph;
        h.push_str(&graph_svg(graph));
        // Rollout progress.
        let rollouts: Vec<_> = graph.nodes.iter().filter(|n| n.rollout.is_some()).collect();
        if !rollouts.is_empty() {
            h.push_str("<h3>Rollouts</h3><table><tr><th>release</th><th>open to the fleet now</th><th>start</th><th>duration</th></tr>");
            for n in rollouts {
                let r = n.rollout.expect("rollout");
                let share = r.share(now).clamp(0.0, 1.0);
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td><span class=\"bar\"><span class=\"fill\" style=\"display:block;width:{:.1}%\"></span></span> {:.1}%</td><td>{}</td><td>{}</td></tr>",
                    esc(&n.version),
                    share * 100.0,
                    share * 100.0,
                    r.start_epoch,
                    r.duration_minutes
                        .map_or("—".to_string(), |d| format!("{d} min")),
                );
            }
            h.push_str("</table>");
        }
        // Releases, newest first, with where updates to each come from
        // (one pass over the edges).
        let mut incoming: Vec<Vec<usize>> = vec![Vec::new(); graph.nodes.len()];
        for &(from, to) in &graph.edges {
            if let Some(v) = incoming.get_mut(to) {
                v.push(from);
            }
        }
        h.push_str("<h3>Releases</h3><table><tr><th>version</th><th>payload</th><th>rules</th><th>updates to it from</th></tr>");
        for (i, n) in graph.nodes.iter().enumerate().rev() {
            let mut tags = String::new();
            for (k, class, label) in [
                (keys::BARRIER, "barrier", "barrier"),
                (keys::DEADEND, "deadend", "dead-end"),
                (keys::ROLLOUT, "rollout", "rollout"),
            ] {
                if n.metadata.contains_key(k) {
                    let _ = write!(tags, "<span class=\"tag {class}\">{label}</span> ");
                }
            }
            let from: Vec<String> = incoming[i]
                .iter()
                .map(|&f| esc(&graph.nodes[f].version))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&n.version),
                esc(&n.payload.chars().take(12).collect::<String>()),
                tags,
                if from.is_empty() {
                    "—".to_string()
                } else {
                    from.join(", ")
                }
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<h2 id=\"fleet\">Fleet</h2>");
    if weekly.is_empty() {
        h.push_str("<p>No nodes have reported yet.</p>");
    } else {
        h.push_str("<h3>Nodes by version, per week</h3>");
        h.push_str(&weekly_svg(weekly));
        if let Some(last) = weekly.last() {
            let _ = write!(
                h,
                "<h3>Week of {}</h3><p>{} nodes (estimated, ±{:.1}%)</p>",
                week_start(last.week),
                last.nodes,
                crate::stats::RELATIVE_STANDARD_ERROR * 100.0
            );
            let mut by_version: BTreeMap<&str, u64> = BTreeMap::new();
            for versions in last.by_version.values() {
                for (v, n) in versions {
                    *by_version.entry(v.as_str()).or_default() += n;
                }
            }
            for (title, by) in [
                ("stream", count_rows(&last.by_stream, usize::MAX)),
                ("architecture", count_rows(&last.by_basearch, usize::MAX)),
                ("platform", count_rows(&last.by_platform, usize::MAX)),
                ("version", count_rows(&by_version, TOP_VERSIONS_TABLE)),
            ] {
                let _ = write!(h, "<table><tr><th>{title}</th><th>nodes</th></tr>");
                for (k, n) in by {
                    let _ = write!(h, "<tr><td>{}</td><td>{n}</td></tr>", esc(&k));
                }
                h.push_str("</table>");
            }
        }
    }
    h.push_str(
        "<p><a href=\"/status\">status</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
    );
    h
}

/// The graph as an SVG: releases left to right, edges as arcs.
pub(crate) fn graph_svg(graph: &release::graph::Graph) -> String {
    let n = graph.nodes.len();
    let step = 28.0;
    let width = (n.max(1) as f64) * step + 120.0;
    let height = 220.0;
    let base = 110.0;
    let x = |i: usize| 20.0 + i as f64 * step + step / 2.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"update graph\">"
    );
    for &(a, b) in &graph.edges {
        let (x1, x2) = (x(a), x(b));
        let rise = ((x2 - x1).abs() / 2.0).min(100.0);
        let _ = write!(
            s,
            "<path d=\"M{x1:.1},{base} Q{:.1},{:.1} {x2:.1},{base}\" fill=\"none\" stroke=\"#888\" stroke-width=\"1\"/>",
            (x1 + x2) / 2.0,
            base - rise
        );
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let color = if node.metadata.contains_key(keys::DEADEND) {
            "#c94c4c"
        } else if node.rollout.is_some() {
            "#e07b39"
        } else if node.metadata.contains_key(keys::BARRIER) {
            "#3c6eb4"
        } else {
            "#bbb"
        };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{base}\" r=\"6\" fill=\"{color}\"><title>{}</title></circle>",
            x(i),
            esc(&node.version)
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" transform=\"rotate(60 {:.1} {})\">{}</text>",
            x(i),
            base + 12.0,
            x(i),
            base + 12.0,
            esc(&node.version)
        );
    }
    s.push_str("</svg>");
    s
}

/// Rows of a count table, largest first, at most `top` by name and the
/// rest added up as "other".
fn count_rows<K: AsRef<str>>(by: &BTreeMap<K, u64>, top: usize) -> Vec<(String, u64)> {
    let mut rows: Vec<(&str, u64)> = by.iter().map(|(k, n)| (k.as_ref(), *n)).collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut other = 0;
    for (k, n) in rows {
        if k == OTHER || out.len() >= top {
            other += n;
        } else {
            out.push((k.to_string(), n));
        }
    }
    if other > 0 {
        out.push((OTHER.to_string(), other));
    }
    out
}

/// Per week shown: nodes per version (all streams), the top versions by
/// name and the rest as "other".
/// A bar of the chart: the week, its nodes, the count per version shown.
type Bar = (i64, u64, Vec<u64>);

fn chart_data(weekly: &[WeekSummary]) -> (Vec<String>, Vec<Bar>) {
    let weeks = &weekly[weekly.len().saturating_sub(WEEKS)..];
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for w in weeks {
        for versions in w.by_version.values() {
            for (v, n) in versions {
                *totals.entry(v.as_str()).or_default() += n;
            }
        }
    }
    let mut top: Vec<String> = count_rows(&totals, TOP_VERSIONS)
        .into_iter()
        .map(|(v, _)| v)
        .filter(|v| v != OTHER)
        .collect();
    top.sort();
    let index: BTreeMap<&str, usize> = top
        .iter()
        .enumerate()
        .map(|(i, v)| (v.as_str(), i))
        .collect();
    let mut bars: Vec<Bar> = weeks
        .iter()
        .map(|w| {
            // One slot per top version, then "other".
            let mut counts = vec![0u64; top.len() + 1];
            for versions in w.by_version.values() {
                for (v, n) in versions {
                    counts[index.get(v.as_str()).copied().unwrap_or(top.len())] += n;
                }
            }
            (w.week, w.nodes, counts)
        })
        .collect();
    if bars.iter().any(|b| b.2.last().is_some_and(|&n| n > 0)) {
        top.push(OTHER.to_string());
    } else {
        for b in &mut bars {
            b.2.pop();
        }
    }
    (top, bars)
}

fn weekly_svg(weekly: &[WeekSummary]) -> String {
    let (versions, weeks) = chart_data(weekly);
    // Bars stack version counts: a node that changed version during a
    // week is in two of them, so scale by the stacks, not by `nodes`.
    let max: u64 = weeks
        .iter()
        .map(|(_, _, c)| c.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1);
    let (bar_w, gap, chart_h) = (36.0, 14.0, 160.0);
    let width = weeks.len() as f64 * (bar_w + gap) + 220.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" role=\"img\" aria-label=\"nodes by version per week\">",
        chart_h + 50.0
    );
    let color = |vi: usize| {
        if versions[vi] == OTHER {
            "#bbb"
        } else {
            PALETTE[vi % PALETTE.len()]
        }
    };
    for (wi, (week, total, counts)) in weeks.iter().enumerate() {
        let x = 10.0 + wi as f64 * (bar_w + gap);
        let mut y = chart_h + 10.0;
        for (vi, &count) in counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let hgt = chart_h * count as f64 / max as f64;
            y -= hgt;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w}\" height=\"{hgt:.1}\" fill=\"{}\"><title>{} — {count} nodes</title></rect>",
                color(vi),
                esc(&versions[vi])
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{}</text>",
            x,
            chart_h + 24.0,
            week_start(*week)
        );
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{total}</text>",
            x + 4.0,
            y - 3.0
        );
    }
    let lx = 20.0 + weeks.len() as f64 * (bar_w + gap);
    for (vi, v) in versions.iter().enumerate() {
        let y = 14.0 + vi as f64 * 14.0;
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            y - 9.0,
            color(vi),
            lx + 14.0,
            y,
            esc(v)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn week(w: i64, versions: &[(&str, u64)]) -> WeekSummary {
        let mut s = WeekSummary {
            week: w,
            ..Default::default()
        };
        for (v, n) in versions {
            s.by_version
                .entry("stable".into())
                .or_default()
                .insert(v.to_string(), *n);
            s.nodes += n;
        }
        s.by_stream.insert("stable".into(), s.nodes);
        s
    }

    #[test]
    fn shows_the_top_versions_and_the_rest_as_other() {
        let many: Vec<(String, u64)> = (0..5000).map(|i| (format!("41.{i}"), 1 + i % 3)).collect();
        let many: Vec<(&str, u64)> = many.iter().map(|(v, n)| (v.as_str(), *n)).collect();
        let mut weekly: Vec<WeekSummary> = (0..20).map(|w| week(w, &many[..100])).collect();
        weekly.push(week(20, &many));
        let html = render(&Snapshot::default(), "x86_64", &weekly, 0);
        let chart = html
            .split("aria-label=\"nodes by version per week\"")
            .nth(1)
            .unwrap();
        let chart = chart.split("</svg>").next().unwrap();
        // 12 weeks, each at most TOP_VERSIONS + 1 rectangles, and a legend.
        assert_eq!(
            chart.matches(">1970-").count(),
            WEEKS,
            "a label per week shown"
        );
        assert!(chart.matches("<rect").count() <= WEEKS * (TOP_VERSIONS + 1) + TOP_VERSIONS + 1);
        assert!(chart.contains(">other</text>"));
        // The version table: 20 by name, then other.
        let table = html.split("<th>version</th>").nth(1).unwrap();
        let table = table.split("</table>").next().unwrap();
        assert_eq!(table.matches("<tr>").count(), TOP_VERSIONS_TABLE + 1);
        assert!(table.contains("<td>other</td>"));
        assert!(html.len() < 40_000, "{} bytes", html.len());
    }
}
