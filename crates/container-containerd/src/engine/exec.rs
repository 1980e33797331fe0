//! Execs: FIFOs opened before the exec exists, start, state, and the end of an exec.

use super::*;
use container_core::poll::Poll;

/// One exec: its id, FIFOs, and the exit code once read. Its FIFO folder goes with it:
/// dropped (a failed or abandoned create or start as much as a finished exec), the folder
/// is removed and a stdin writer still running is stopped.
#[derive(Debug)]
pub struct ContainerdExec {
    container: String,
    id: String,
    dir: PathBuf,
    stdin: bool,
    exit: OnceLock<i64>,
    /// The engine's exit watch, which holds this exec's published exit once it came.
    exits: super::exits::ExitWatch,
    /// The FIFO read ends, opened before the exec exists, until the start takes them.
    pipes: std::sync::Mutex<Option<PipePair>>,
    /// The task writing the exec's stdin, while it runs.
    feeder: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl ContainerdExec {
    /// Stops the stdin writer, if one still runs (the process is gone, or nobody waits).
    fn stop_feeding(&self) {
        if let Some(feeder) = self
            .feeder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            feeder.abort();
        }
    }
}

impl Drop for ContainerdExec {
    fn drop(&mut self) {
        self.stop_feeding();
        self.exits.forget(&self.container, &self.id);
        // tmpfs, a few entries: cheap enough for a drop.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long the stdin writer waits for the shim to open the stdin FIFO's read end.
const STDIN_OPEN_WAIT: Duration = Duration::from_secs(10);

/// Writes `source` into the exec's stdin FIFO, then has the shim close the process's
/// stdin (EOF), in a task the exec owns: it ends with the exec (see
/// [`ContainerdExec::stop_feeding`]), never blocking on a process that stopped reading.
pub(super) fn feed_stdin(
    engine: &ContainerdEngine,
    exec: &ContainerdExec,
    source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
) {
    let task = feed_fifo(
        engine,
        &exec.container,
        &exec.id,
        exec.dir.join("stdin"),
        source,
        true,
    );
    *exec
        .feeder
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
}

/// Writes `source` into the stdin FIFO `fifo` of a process of `container` (`exec_id`
/// empty for the main process), then, with `close_io`, has the shim close that process's
/// stdin (EOF), in a task of its own. Without it the stdin stays open, as a terminal's
/// does under Docker when the input ends (the shim would drop bytes not yet copied into
/// the terminal). The FIFO is opened write-only, so a reader gone is an error, not a
/// silent hang.
pub(super) fn feed_fifo(
    engine: &ContainerdEngine,
    container: &str,
    exec_id: &str,
    fifo: std::path::PathBuf,
    source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    close_io: bool,
) -> tokio::task::AbortHandle {
    let (engine, container, exec_id) = (engine.clone(), container.to_string(), exec_id.to_string());
    let open = async move {
        let mut poll = Poll::every(Duration::from_millis(5)).within(STDIN_OPEN_WAIT);
        loop {
            match tokio::net::unix::pipe::OpenOptions::new().open_sender(&fifo) {
                // No reader yet (ENXIO): the shim opens it as the process starts.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    if !poll.pause().await {
                        return Err(e);
                    }
                }
                opened => return opened,
            }
        }
    };
    let close = move |sender| async move {
        drop(sender);
        if !close_io {
            return;
        }
        // The shim keeps the stdin FIFO open: EOF reaches the process only when it is
        // told to close it.
        let close = CloseIoRequest {
            container_id: container,
            exec_id,
            stdin: true,
        };
        if let Ok(request) = engine.c.request(close) {
            if let Err(e) = engine.tasks().close_io(request).await {
                tracing::debug!(error = %map_status(e), "closing the stdin failed");
            }
        }
    };
    container_core::exec::feed_stdin(source, open, close)
}

pub(super) type PipePair = (
    tokio::net::unix::pipe::Receiver,
    Option<tokio::net::unix::pipe::Receiver>,
);

pub(super) fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("cannot make the FIFO {}", path.display()),
        )
        .with_source(e)
    })
}

/// The most read from an output FIFO at once.
const READ_CHUNK: usize = 64 << 10;

/// The output of `stdout` and `stderr` FIFO receivers (read only when polled), merged.
pub(super) fn pipe_output(
    stdout: tokio::net::unix::pipe::Receiver,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
) -> OutputStream {
    fn read(r: tokio::net::unix::pipe::Receiver, kind: StreamKind) -> OutputStream {
        // Read into one buffer that is split off per chunk (no zeroing, no allocation
        // while the consumer keeps up).
        tokio_util::io::ReaderStream::with_capacity(r, READ_CHUNK)
            .map(move |read| match read {
                Ok(data) => Ok(OutputChunk::new(kind, data)),
                Err(e) => Err(io_err("reading the process output failed")(e)),
            })
            .boxed()
    }
    match stderr {
        Some(err) => futures::stream::select(
            read(stdout, StreamKind::Stdout),
            read(err, StreamKind::Stderr),
        )
        .boxed(),
        None => read(stdout, StreamKind::Stdout),
    }
}

pub(super) fn open_receiver(path: &Path) -> Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(io_err("cannot open a FIFO"))
}

impl ContainerdEngine {
    /// An exec is over with `code`: remembered, and its process deleted from the task in
    /// the background (best effort: the task's deletion takes it anyway). Never awaited:
    /// containerd 2.x answers that delete only once the output copy ends, up to 10 s
    /// while a left-behind child holds the output, and the exec's end must not wait for
    /// it (seen as case 71 ending 10 s late on containerd 2.1, when `Get` answered STOPPED
    /// before the exit event was read). The FIFO folder goes with the exec.
    pub(super) fn exec_ended(&self, exec: &ContainerdExec, code: i64) {
        if let Some(delete) = self.exec_over(exec, code) {
            let mut tasks = self.tasks();
            tokio::spawn(async move {
                let _ = tasks.delete_process(delete).await;
            });
        }
    }

    /// Remembers `code` and stops the stdin writer; the request that deletes the exec's
    /// process.
    fn exec_over(
        &self,
        exec: &ContainerdExec,
        code: i64,
    ) -> Option<containerd_client::tonic::Request<DeleteProcessRequest>> {
        let _ = exec.exit.set(code);
        exec.stop_feeding();
        let delete = DeleteProcessRequest {
            container_id: exec.container.clone(),
            exec_id: exec.id.clone(),
        };
        self.c.request(delete).ok()
    }
}

pub(super) async fn create(
    engine: &ContainerdEngine,
    container: &str,
    spec: &ExecSpec,
) -> Result<ContainerdExec> {
    let record = engine.container(container).await?;
    let container = record.id.as_str();
    let base = ContainerdEngine::spec_of(&record);
    let mut process = base["process"].clone();
    process["args"] = serde_json::json!(spec.cmd);
    let base_env: Vec<String> = process["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // The exec's entries replace the container's (a duplicate key would leave the
    // container's first, which is what `getenv` finds); a container made before the
    // default PATH existed gets it here.
    let env = crate::spec::process_env(&base_env, &spec.env);
    process["env"] = serde_json::json!(env);
    if let Some(dir) = &spec.working_dir {
        process["cwd"] = serde_json::json!(dir);
    }
    if let Some(user) = spec.user {
        process["user"] = serde_json::json!({"uid": user.uid, "gid": user.gid});
    }
    process["terminal"] = serde_json::json!(spec.tty);
    let id = format!("exec-{}", uuid::Uuid::new_v4().simple());
    // Subscribed (and proven live) before the exec exists: its exit cannot be missed.
    engine.exits.ensure(&engine.c).await;
    let dir = engine.run.join(container).join(&id);
    std::fs::create_dir_all(&dir).map_err(io_err("cannot make the exec folder"))?;
    let exec = ContainerdExec {
        container: container.to_string(),
        id,
        dir,
        stdin: spec.has_stdin(),
        exit: OnceLock::new(),
        exits: engine.exits.clone(),
        pipes: std::sync::Mutex::new(None),
        feeder: std::sync::Mutex::new(None),
    };
    mkfifo(&exec.dir.join("stdout"))?;
    if !spec.tty {
        mkfifo(&exec.dir.join("stderr"))?;
    }
    if exec.stdin {
        mkfifo(&exec.dir.join("stdin"))?;
    }
    let value = serde_json::to_vec(&process)
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot encode the process").with_source(e))?;
    let path = |n: &str| exec.dir.join(n).display().to_string();
    let request = ExecProcessRequest {
        container_id: container.to_string(),
        stdin: if exec.stdin {
            path("stdin")
        } else {
            String::new()
        },
        stdout: path("stdout"),
        stderr: if spec.tty {
            String::new()
        } else {
            path("stderr")
        },
        terminal: spec.tty,
        spec: Some(any(PROCESS_TYPE, value)),
        exec_id: exec.id.clone(),
    };
    // The read ends open before the exec exists: the shim opens the write ends.
    let stdout = open_receiver(&exec.dir.join("stdout"))?;
    let stderr = if spec.tty {
        None
    } else {
        Some(open_receiver(&exec.dir.join("stderr"))?)
    };
    match engine.tasks().exec(engine.c.request(request)?).await {
        Ok(_) => {}
        Err(s) if s.code() == Code::NotFound || s.code() == Code::FailedPrecondition => {
            return Err(state_conflict(
                format!("container {container} is not running"),
                "not running",
            ))
        }
        Err(s) => return Err(map_status(s)),
    }
    *exec
        .pipes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((stdout, stderr));
    Ok(exec)
}

pub(super) async fn start(
    engine: &ContainerdEngine,
    exec: &ContainerdExec,
    spec: &ExecSpec,
) -> Result<OutputStream> {
    start_with(engine, exec, spec.stdin_source()).await
}

/// Starts `exec`, feeding `stdin` (the exec must have been created with a stdin) then
/// EOF; its output.
pub(super) async fn start_with(
    engine: &ContainerdEngine,
    exec: &ContainerdExec,
    stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
) -> Result<OutputStream> {
    let taken = exec
        .pipes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let (stdout, stderr) =
        taken.ok_or_else(|| Error::new(ErrorKind::Internal, "the exec's output pipes are gone"))?;
    let start = StartRequest {
        container_id: exec.container.clone(),
        exec_id: exec.id.clone(),
    };
    // The request runs to its end in a task that holds the FIFOs' read ends until then:
    // a start cut off midway (the caller gave up) with the read ends closed left the shim
    // blocked for good opening the write ends, its lock held: every later call on the
    // container timed out, its removal included. Afterwards, read ends dropped unread
    // only make the process's writes fail.
    let request = engine.c.request(start)?;
    let mut tasks = engine.tasks();
    let (started, stdout, stderr) = tokio::spawn(async move {
        let started = tasks.start(request).await;
        (started, stdout, stderr)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Internal, "the exec start task failed").with_source(e))?;
    if let Err(s) = started {
        // The runtime could not start the binary: what a shell says (127 not found,
        // 126 not executable), the runtime's message on stderr.
        let text = s.message().to_string();
        if s.code() == Code::Unknown && text.contains("OCI runtime exec failed") {
            let code = container_core::error::shell_status_for_runtime_text(&text).unwrap_or(126);
            engine.exec_ended(exec, code);
            let chunk = OutputChunk::new(StreamKind::Stderr, format!("{text}\n"));
            return Ok(futures::stream::iter([Ok(chunk)]).boxed());
        }
        // Not started: the shim's record of it goes (its folder goes with the exec).
        let delete = DeleteProcessRequest {
            container_id: exec.container.clone(),
            exec_id: exec.id.clone(),
        };
        if let Ok(r) = engine.c.request(delete) {
            let _ = engine.tasks().delete_process(r).await;
        }
        return Err(map_status(s));
    }
    match stdin {
        Some(source) if exec.stdin => feed_stdin(engine, exec, source),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::Internal,
                "stdin given to an exec created without one",
            ))
        }
        None => {}
    }
    Ok(pipe_output(stdout, stderr))
}

pub(super) async fn state(engine: &ContainerdEngine, exec: &ContainerdExec) -> Result<ExecState> {
    // containerd 2.x may take up to 10 s to answer for an exec that exited while a child
    // holds its output: its published exit, when it comes first, is the answer.
    let published = || exec.exits.code(&exec.container, &exec.id);
    let mut arrived = Box::pin(exec.exits.arrived());
    arrived.as_mut().enable();
    if let Some(code) = exec.exit.get() {
        return Ok(ended(exec, *code));
    }
    if let Some(code) = published() {
        engine.exec_ended(exec, code);
        return Ok(ended(exec, code));
    }
    let request = GetRequest {
        container_id: exec.container.clone(),
        exec_id: exec.id.clone(),
    };
    let mut tasks = engine.tasks();
    let get = tasks.get(engine.c.request(request)?);
    tokio::pin!(get);
    let response = loop {
        tokio::select! {
            response = &mut get => break response,
            // Some exec's exit: this one's, or wait on.
            () = &mut arrived => {
                if let Some(code) = published() {
                    engine.exec_ended(exec, code);
                    return Ok(ended(exec, code));
                }
                arrived = Box::pin(exec.exits.arrived());
                arrived.as_mut().enable();
            }
        }
    };
    let process = response
        .map_err(map_status)?
        .into_inner()
        .process
        .ok_or_else(|| Error::new(ErrorKind::Internal, "an exec without a process"))?;
    let running = process.status == RUNNING;
    let exit_code = (process.status == STOPPED).then(|| i64::from(process.exit_status));
    if let Some(code) = exit_code {
        engine.exec_ended(exec, code);
    }
    Ok(ExecState {
        started: process.status != CREATED,
        running,
        exit_code,
        pid: (running && process.pid > 0)
            .then(|| i32::try_from(process.pid).unwrap_or(0))
            .filter(|p| *p > 0),
        container_id: exec.container.clone(),
    })
}

/// The state of an exec that exited with `code`.
fn ended(exec: &ContainerdExec, code: i64) -> ExecState {
    ExecState {
        started: true,
        running: false,
        exit_code: Some(code),
        pid: None,
        container_id: exec.container.clone(),
    }
}
