//! Tasks: the main process (start with its log pumps, stop, kill, wait) and its logs.

use super::*;
use container_core::poll::Poll;

/// How long a start waits for the log pump of the run before to let go of the log.
const PUMP_HANDOVER: Duration = Duration::from_secs(2);

impl ContainerdEngine {
    /// The main task's process; `None` when there is no task.
    pub(super) async fn task(
        &self,
        id: &str,
    ) -> Result<Option<containerd_client::types::v1::Process>> {
        let request = GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        match self.tasks().get(self.c.request(request)?).await {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(map_status(s)),
        }
    }

    pub(super) async fn delete_task(&self, id: &str) -> Result<()> {
        let request = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        match self.tasks().delete(self.c.request(request)?).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(map_status(s)),
        }
    }

    pub(super) async fn signal(
        &self,
        id: &str,
        exec_id: &str,
        signal: Signal,
        all: bool,
    ) -> Result<()> {
        let request = KillRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal: u32::try_from(signal.number()).unwrap_or(15),
            all,
        };
        match self.tasks().kill(self.c.request(request)?).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()), // already finished
            Err(s) => Err(map_status(s)),
        }
    }

    /// Waits (up to `limit`) for the main task to exit; its exit code when it did.
    pub(super) async fn wait_task(&self, id: &str, limit: Duration) -> Result<Option<i64>> {
        let request = WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let mut tasks = self.tasks();
        let waiting = tasks.wait(self.c.request(request)?);
        match tokio::time::timeout(limit, waiting).await {
            Ok(Ok(r)) => Ok(Some(i64::from(r.into_inner().exit_status))),
            Ok(Err(s)) if s.code() == Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(map_status(s)),
            Err(_) => Ok(None),
        }
    }

    /// The log file of container `id`'s `stream`.
    pub(super) fn log_path(&self, id: &str, stream: StreamKind) -> PathBuf {
        logs::log_path(&self.data.join("logs").join(id), stream)
    }

    /// Every task of the namespace, by container id.
    pub(super) async fn tasks_by_container(
        &self,
    ) -> Result<HashMap<String, containerd_client::types::v1::Process>> {
        let tasks = self
            .tasks()
            .list(self.c.request(ListTasksRequest::default())?)
            .await
            .map_err(map_status)?
            .into_inner()
            .tasks;
        Ok(tasks.into_iter().map(|t| (t.id.clone(), t)).collect())
    }

    /// Takes over the log pumps of this namespace's running tasks that no program pumps
    /// now (their starter has exited): their output flows again into the log files.
    pub(super) async fn resume_log_pumps(&self) -> Result<()> {
        let tasks = self.tasks_by_container().await?;
        for task in tasks.values().filter(|t| t.status == RUNNING) {
            for (kind, name) in [
                (StreamKind::Stdout, "stdout"),
                (StreamKind::Stderr, "stderr"),
            ] {
                let fifo = self.run.join(&task.id).join(name);
                let log = self.log_path(&task.id, kind);
                if !fifo.exists() || !log.parent().is_some_and(Path::exists) {
                    continue;
                }
                if logs::done_marker(&log).exists() {
                    continue;
                }
                if logs::start_pump(&fifo, &log, logs::Bounds::default())?.is_some() {
                    tracing::debug!(container = %task.id, stream = name, "resumed the log pump");
                }
            }
        }
        Ok(())
    }
}

pub(super) async fn start(engine: &ContainerdEngine, id: &str) -> Result<()> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    match engine.task(id).await? {
        Some(p) if p.status == RUNNING => return Ok(()),
        Some(_) => engine.delete_task(id).await?,
        None => {}
    }
    let mounts = SnapshotsClient::new(engine.c.channel.clone())
        .mounts(engine.c.request(MountsRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: record.snapshot_key.clone(),
        })?)
        .await
        .map_err(map_status)?
        .into_inner()
        .mounts;
    if mounts.is_empty() {
        return Err(Error::new(
            ErrorKind::Internal,
            "the container's snapshot has no mounts",
        ));
    }
    let logs = engine.data.join("logs").join(id);
    // Root's alone: logs echo what steps print, secrets included.
    super::secure_dir(&engine.data)?;
    super::secure_dir(&logs)?;
    let run = engine.run.join(id);
    std::fs::create_dir_all(&run).map_err(io_err("cannot make the state folder"))?;
    // The main process's output goes through FIFOs to a pump per stream that copies
    // it into bounded, rotated log files (`logs`); containerd's own `file://` logging
    // would merge the two streams into one unbounded file.
    // With a logging binary configured (`logger::LOGGER_ENV`), the shim runs it and
    // it writes the same files, independent of this program.
    let spec = ContainerdEngine::spec_of(&record);
    let (terminal, stdin_open) = (spec::has_terminal(&spec), spec::has_open_stdin(&spec));
    // A logging binary gets no stdin from the shim (its binary IO has none): a main
    // process with an attachable stdin or a terminal is pumped by this program.
    let logger =
        logs::logger_uri(&logs, logs::Bounds::default()).filter(|_| !(stdin_open || terminal));
    let mut fifos = Vec::new();
    let mut pumps = StartingPumps(Vec::new());
    for kind in [StreamKind::Stdout, StreamKind::Stderr] {
        let fifo = run.join(match kind {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        });
        let _ = std::fs::remove_file(&fifo);
        let log = engine.log_path(id, kind);
        let _ = std::fs::remove_file(logs::done_marker(&log));
        if terminal && kind == StreamKind::Stderr {
            // A terminal is one stream (stdout): nothing will write stderr.
            std::fs::write(logs::done_marker(&log), b"")
                .map_err(io_err("cannot mark the stderr log done"))?;
            fifos.push(String::new());
            continue;
        }
        if let Some(uri) = &logger {
            fifos.push(uri.clone());
            continue;
        }
        mkfifo(&fifo)?;
        // The pump of the run before may still be finishing (a stop that just returned:
        // the shim closes the FIFO, the pump writes its last bytes and lets go).
        let mut handover = Poll::every(Duration::from_millis(20)).within(PUMP_HANDOVER);
        let pump = loop {
            match logs::start_pump(&fifo, &log, logs::Bounds::default())? {
                Some(pump) => break Some(pump),
                None if handover.pause().await => {}
                None => break None,
            }
        };
        let Some(pump) = pump else {
            // Starting without a reader would block the process once the pipe fills.
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "the log of container {id} is still pumped by another program (its lock \
                     is held); start again once that program let go"
                ),
            ));
        };
        pumps.0.push(pump);
        fifos.push(fifo.display().to_string());
    }
    // The shim opens the stdin FIFO and keeps it until the attach closes it (CloseIO).
    let stdin = run.join("stdin");
    let _ = std::fs::remove_file(&stdin);
    let stdin = if stdin_open {
        super::exec::mkfifo(&stdin)?;
        stdin.display().to_string()
    } else {
        String::new()
    };
    let request = CreateTaskRequest {
        container_id: id.to_string(),
        rootfs: mounts,
        stdin,
        stdout: fifos[0].clone(),
        stderr: fifos[1].clone(),
        terminal,
        ..CreateTaskRequest::default()
    };
    engine
        .tasks()
        .create(engine.c.request(request)?)
        .await
        .map_err(map_status)?;
    // The process waits (runc create): arm the OOM watch before it runs.
    if let Some(pid) = engine
        .task(id)
        .await?
        .map(|p| p.pid)
        .and_then(|p| i32::try_from(p).ok())
    {
        let (oom, id) = (engine.oom.clone(), id.to_string());
        let armed = tokio::task::spawn_blocking(move || oom.arm(&id, pid))
            .await
            .unwrap_or(false);
        tracing::debug!(armed, "OOM watch");
    }
    let start = StartRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    };
    engine
        .tasks()
        .start(engine.c.request(start)?)
        .await
        .map_err(map_status)?;
    pumps.0.clear(); // the task runs: its pumps live on with it
    std::fs::write(run.join("started"), b"").map_err(io_err("cannot record the start"))?;
    Ok(())
}

pub(super) async fn attach_stdin(
    engine: &ContainerdEngine,
    id: &str,
    source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
) -> Result<tokio::task::AbortHandle> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    let spec = ContainerdEngine::spec_of(&record);
    if !spec::has_open_stdin(&spec) {
        return Err(container_core::raw::no_open_stdin(id));
    }
    if !matches!(engine.task(id).await?, Some(p) if p.status == RUNNING) {
        return Err(container_core::raw::not_running_for_stdin(id));
    }
    let fifo = engine.run.join(id).join("stdin");
    // A terminal's input ending is no EOF (`^D` is), as with Docker and Podman.
    let close_io = !spec::has_terminal(&spec);
    Ok(super::exec::feed_fifo(
        engine, id, "", fifo, source, close_io,
    ))
}

pub(super) async fn resize_tty(
    engine: &ContainerdEngine,
    id: &str,
    rows: u16,
    cols: u16,
) -> Result<()> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    let spec = ContainerdEngine::spec_of(&record);
    if !spec::has_terminal(&spec) {
        return Err(container_core::raw::no_tty(id));
    }
    if !matches!(engine.task(id).await?, Some(p) if p.status == RUNNING) {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("container {id} is not running: its terminal has no size to set"),
        ));
    }
    let request = ResizePtyRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
        width: u32::from(cols),
        height: u32::from(rows),
    };
    engine
        .tasks()
        .resize_pty(engine.c.request(request)?)
        .await
        .map_err(map_status)?;
    Ok(())
}

/// The log pumps of a task being started, stopped if the start fails or is abandoned
/// before the task runs: a task never created would leave them waiting for a writer that
/// never comes, holding their locks and FIFOs (a task created but not started is deleted
/// by the next start, and its pumps are new then).
struct StartingPumps(Vec<logs::Pump>);

impl Drop for StartingPumps {
    fn drop(&mut self) {
        for pump in &self.0 {
            pump.abort();
        }
    }
}

pub(super) async fn stop(
    engine: &ContainerdEngine,
    id: &str,
    grace: Option<Duration>,
) -> Result<()> {
    let container = engine.container(id).await?;
    let id = container.id.as_str();
    // Created (never started) or stopped: nothing to stop. Running, paused or pausing:
    // its processes exist, and a stop must end them or say it could not.
    if !matches!(engine.task(id).await?, Some(p) if !matches!(p.status, CREATED | STOPPED)) {
        return Ok(());
    }
    let spec = ContainerdEngine::spec_of(&container);
    let signal = spec["annotations"][spec::STOP_SIGNAL]
        .as_str()
        .and_then(|s| s.parse::<Signal>().ok())
        .unwrap_or(Signal::TERM);
    let grace = grace.unwrap_or_else(|| {
        spec["annotations"][spec::STOP_GRACE_MS]
            .as_str()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis)
    });
    engine.signal(id, "", signal, false).await?;
    if engine.wait_task(id, grace).await?.is_some() {
        return Ok(());
    }
    engine.signal(id, "", Signal::KILL, true).await?;
    if engine.wait_task(id, KILL_WAIT).await?.is_some() {
        return Ok(());
    }
    // Not seen to exit: gone is stopped; anything else is not (a frozen task, a process
    // in uninterruptible sleep), and a stop never says Ok for a container that runs.
    match engine.task(id).await? {
        Some(p) if p.status != STOPPED => Err(Error::new(
            ErrorKind::Timeout,
            format!(
                "container {id} still runs {KILL_WAIT:?} after SIGKILL (the task is {})",
                task_status(p.status)
            ),
        )),
        _ => Ok(()),
    }
}

/// How long a stop waits for the task to exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// containerd's name of a task status (containerd.v1.types.Status).
fn task_status(status: i32) -> &'static str {
    match status {
        CREATED => "created",
        RUNNING => "running",
        STOPPED => "stopped",
        4 => "paused",
        5 => "pausing",
        _ => "in an unknown state",
    }
}

pub(super) async fn kill(engine: &ContainerdEngine, id: &str, signal: Signal) -> Result<()> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    match engine.task(id).await? {
        Some(p) if p.status == RUNNING => engine.signal(id, "", signal, false).await,
        _ => Err(state_conflict(
            format!("container {id} is not running"),
            "not running",
        )),
    }
}

pub(super) async fn wait(engine: &ContainerdEngine, id: &str) -> Result<Option<i64>> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    match engine.task(id).await? {
        None => Ok(None),
        Some(_) => engine.wait_task(id, Duration::MAX).await,
    }
}

pub(super) async fn logs(
    engine: &ContainerdEngine,
    id: &str,
    options: &LogOptions,
) -> Result<OutputStream> {
    let record = engine.container(id).await?;
    let id = record.id.as_str();
    let mut streams = Vec::new();
    for (on, kind) in [
        (options.stdout, StreamKind::Stdout),
        (options.stderr, StreamKind::Stderr),
    ] {
        if !on {
            continue;
        }
        let (handle, task) = (engine.clone(), id.to_string());
        let running: logs::Running = Box::new(move || {
            let (engine, task) = (handle.clone(), task.clone());
            Box::pin(async move {
                matches!(engine.task(&task).await, Ok(Some(p)) if p.status == RUNNING)
            })
        });
        let s = logs::read(
            engine.log_path(id, kind),
            logs::Bounds::default(),
            kind,
            options.follow,
            running,
        );
        streams.push(s.boxed());
    }
    Ok(futures::stream::select_all(streams).boxed())
}
