//! `containerctl pull`: a progress bar per layer (indicatif) when stderr is a terminal,
//! one plain line per phase change otherwise (logs, CI), JSON events with `--output json`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use container::{ContainerManager, LayerPhase, PullOptions, PullProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Output;

fn phase_name(phase: LayerPhase) -> &'static str {
    match phase {
        LayerPhase::Waiting => "waiting",
        LayerPhase::Downloading => "downloading",
        LayerPhase::Verifying => "verifying",
        LayerPhase::Extracting => "extracting",
        LayerPhase::Complete => "complete",
        LayerPhase::AlreadyExists => "already exists",
        _ => "working",
    }
}

fn short(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Bars on a terminal: one per layer, bytes when the engine reports them.
struct Bars {
    multi: MultiProgress,
    layers: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Bars {
    fn new() -> Self {
        let style = ProgressStyle::with_template(
            "{prefix:12} {msg:14} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:10}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            layers: HashMap::new(),
            style,
        }
    }

    fn layer(&mut self, id: &str, phase: LayerPhase, current: Option<u64>, total: Option<u64>) {
        let bar = self.layers.entry(id.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(self.style.clone());
            bar.set_prefix(short(id));
            bar
        });
        bar.set_message(phase_name(phase));
        if let Some(total) = total {
            bar.set_length(total);
        }
        if let Some(current) = current {
            bar.set_position(current);
        }
        if matches!(phase, LayerPhase::Complete | LayerPhase::AlreadyExists) {
            if let Some(len) = bar.length() {
                bar.set_position(len);
            }
            bar.finish();
        }
    }

    fn finish(&mut self) {
        for bar in self.layers.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

/// Plain lines: one per layer phase change (never one per byte count).
#[derive(Default)]
struct Lines {
    phases: HashMap<String, LayerPhase>,
}

impl Lines {
    fn layer(&mut self, id: &str, phase: LayerPhase) {
        if self.phases.insert(id.to_string(), phase) != Some(phase) {
            eprintln!("{}: {}", short(id), phase_name(phase));
        }
    }
}

/// Pulls `image`, showing progress as fits where stderr goes.
pub(crate) async fn pull(
    engine: &dyn ContainerManager,
    image: &str,
    out: Output,
) -> container::Result<()> {
    enum View {
        Bars(Bars),
        Lines(Lines),
        Json,
        /// The image was current: said once, nothing more to show.
        UpToDate,
    }
    let view = match out {
        Output::Json => View::Json,
        Output::Text if std::io::stderr().is_terminal() => View::Bars(Bars::new()),
        Output::Text => View::Lines(Lines::default()),
    };
    let view = Arc::new(Mutex::new(view));
    let shown = view.clone();
    let options = PullOptions::default().with_progress(move |event: &PullProgress| {
        let mut view = shown.lock().unwrap_or_else(PoisonError::into_inner);
        match (&mut *view, event) {
            (View::Json, event) => {
                if let Ok(line) = serde_json::to_string(event) {
                    println!("{line}");
                }
            }
            (
                View::Bars(bars),
                PullProgress::Layer {
                    id,
                    phase,
                    current,
                    total,
                },
            ) => bars.layer(id, *phase, *current, *total),
            (View::Lines(lines), PullProgress::Layer { id, phase, .. }) => lines.layer(id, *phase),
            (View::Bars(_) | View::Lines(_), PullProgress::AlreadyPresent { reference }) => {
                eprintln!("{reference}: up to date");
                *view = View::UpToDate;
            }
            (View::UpToDate, _) => {}
            (View::Bars(_) | View::Lines(_), PullProgress::Completed { reference, digest }) => {
                match digest {
                    Some(d) => eprintln!("{reference}: pulled ({d})"),
                    None => eprintln!("{reference}: pulled"),
                }
            }
            _ => {}
        }
    });
    let result = engine.pull(image, &options).await;
    if let View::Bars(bars) = &mut *view.lock().unwrap_or_else(PoisonError::into_inner) {
        bars.finish();
    }
    result
}
