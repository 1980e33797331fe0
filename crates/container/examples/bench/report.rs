//! The results as a markdown table, each ratio beside issue 16's target for it.

use serde_json::Value;

/// A ratio's target: at most or at least a bound.
enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// Reported for context, with no target of its own.
    None,
}

impl Target {
    fn show(&self) -> String {
        match self {
            Target::AtMost(b) => format!("≤ {b}"),
            Target::AtLeast(b) => format!("≥ {b}"),
            Target::None => "-".into(),
        }
    }

    fn met(&self, v: f64) -> &'static str {
        let ok = match self {
            Target::AtMost(b) => v <= *b,
            Target::AtLeast(b) => v >= *b,
            Target::None => return "",
        };
        match (v.is_finite(), ok) {
            (false, _) => "-",
            (true, true) => "met",
            (true, false) => "missed",
        }
    }
}

/// One figure, rounded for the table (`-` where there is none).
fn fig(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 100.0 => format!("{x:.0}"),
        Some(x) if x.is_finite() => format!("{x:.2}"),
        _ => "-".into(),
    }
}

/// The table for one backend's results.
pub(crate) fn markdown(r: &Value) -> String {
    let mut rows = vec![
        "| measure | library | CLI | floor: raw client (lines: chunks) | ratio | target | |"
            .to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    let mut row =
        |measure: &str, lib: &Value, cli: &Value, raw: &Value, ratio: &Value, t: Target| {
            if lib.is_null() {
                return; // not measured in this run
            }
            let v = ratio.as_f64().unwrap_or(f64::NAN);
            rows.push(format!(
                "| {measure} | {} | {} | {} | {} | {} | {} |",
                fig(lib),
                fig(cli),
                fig(raw),
                fig(ratio),
                t.show(),
                t.met(v)
            ));
        };
    let none = Value::Null;
    let rt = &r["exec_round_trip_ms"];
    row(
        "exec round trip, median ms (library / raw client)",
        &rt["library"]["median"],
        &rt["cli"]["median"],
        &rt["raw_client"]["median"],
        &rt["ratio_library_to_raw_client"],
        Target::AtMost(1.05),
    );
    let tp = &r["exec_stdout_throughput_mib_s"];
    let mib = tp["mib"].as_u64().unwrap_or(0);
    let samples = tp["samples"].as_u64().unwrap_or(1);
    row(
        &format!(
            "stdout {mib} MiB read in a task, median of {samples}, MiB/s (library / raw stream)"
        ),
        &tp["library"],
        &tp["cli"],
        &tp["raw_client"],
        &tp["ratio_library_to_raw_client"],
        Target::AtLeast(0.95),
    );
    row(
        &format!("stdout {mib} MiB read in a task, median of {samples}, MiB/s (library / CLI)"),
        &tp["library"],
        &tp["cli"],
        &tp["raw_client"],
        &tp["ratio_library_to_cli"],
        Target::AtLeast(1.0),
    );
    // Both read on the thread blocked on `main`: woken across threads for every read.
    let main = &tp["main_thread"];
    row(
        &format!("stdout {mib} MiB read on main's thread, MiB/s (library / raw stream)"),
        &main["library"],
        &tp["cli"],
        &main["raw_client"],
        &main["ratio_library_to_raw_client"],
        Target::AtLeast(0.95),
    );
    row(
        &format!("stdout {mib} MiB read on main's thread, MiB/s (library / CLI)"),
        &main["library"],
        &tp["cli"],
        &main["raw_client"],
        &main["ratio_library_to_cli"],
        Target::AtLeast(1.0),
    );
    for m in tp["memory"].as_array().into_iter().flatten() {
        let growth = m["rss_growth_kib"].as_f64().map(|k| k / 1024.0);
        row(
            &format!("RSS growth streaming {} MiB, MiB", m["mib"]),
            &growth.into(),
            &none,
            &none,
            &growth.into(),
            Target::AtMost(32.0),
        );
    }
    let ln = &r["exec_lines_throughput_mib_s"];
    row(
        &format!(
            "lines of 31 bytes, {} MiB, median of {}, MiB/s (lines / chunks)",
            ln["mib"], ln["samples"]
        ),
        &ln["lines"],
        &none,
        &ln["chunks"],
        &ln["ratio_lines_to_chunks"],
        Target::AtLeast(0.8),
    );
    let run = &r["run_to_completion_ms"];
    row(
        "run to completion, median ms (library / `run --rm`)",
        &run["library"]["median"],
        &run["cli_run_rm"]["median"],
        &none,
        &run["ratio_library_to_cli"],
        Target::AtMost(0.9),
    );
    for level in r["concurrent_lifecycles"].as_array().into_iter().flatten() {
        let n = level["concurrency"].as_u64().unwrap_or(0);
        let failures = level["library"]["failures"].as_u64().unwrap_or(0)
            + level["cli"]["failures"].as_u64().unwrap_or(0);
        let target = if n >= 32 {
            Target::AtLeast(1.2)
        } else {
            Target::None
        };
        row(
            &format!(
                "{n} concurrent lifecycles, per s (library / CLI), p90 {} / {} ms, {failures} failed",
                fig(&level["library"]["latency_ms"]["p90"]),
                fig(&level["cli"]["latency_ms"]["p90"]),
            ),
            &level["library"]["lifecycles_per_s"],
            &level["cli"]["lifecycles_per_s"],
            &none,
            &if failures == 0 {
                level["ratio_library_to_cli_throughput"].clone()
            } else {
                Value::Null
            },
            target,
        );
    }
    let containerd = r["engine"]["backend"].as_str() == Some("containerd");
    let pull = &r["pull_ms"];
    row(
        "pull of 8 layers of 4 MiB, median ms (library / CLI)",
        &pull["library"]["median"],
        &pull["cli"]["median"],
        &none,
        &pull["ratio_library_to_cli"],
        Target::AtMost(if containerd { 1.2 } else { 1.1 }),
    );
    let copy = &r["copy_out_ms"];
    row(
        &format!("copy out of {} MiB, median ms (library / CLI)", copy["mib"]),
        &copy["library"]["median"],
        &copy["cli"]["median"],
        &none,
        &copy["ratio_library_to_cli"],
        Target::AtMost(1.1),
    );
    let engine = &r["engine"];
    format!(
        "### {} ({} {}, CLI {} {})\n\n{}\n",
        engine["backend"].as_str().unwrap_or("?"),
        engine["engine"].as_str().unwrap_or(""),
        engine["version"].as_str().unwrap_or(""),
        r["cli"]["program"].as_str().unwrap_or(""),
        r["cli"]["version"].as_str().unwrap_or(""),
        rows.join("\n")
    )
}
