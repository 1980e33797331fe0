//! Main-process logs against the real containerd (run by `cargo xtask ci`): the files
//! stay within their bound, and a program that connects after the starter exited takes
//! the pumps over with nothing lost.

use std::time::Duration;

use container_containerd::{MAX_FILE_BYTES, ROTATED_FILES};
use container_core::{ConnectOptions, ContainerConfig, ContainerManager, LogOptions, PullOptions};
use futures::TryStreamExt;

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";
const NAMESPACE: &str = "container-rs-logs-test";
const STATE: &str = "/var/lib/container-rs/containerd/container-rs-logs-test/logs";

async fn manager() -> container_containerd::ContainerdManager {
    let options = ConnectOptions::owned_by_session("containerd-logs-test", "logs").expect("labels");
    container_containerd::connect(options)
        .await
        .expect("containerd answers (cargo xtask engines up)")
}

async fn stdout_of(m: &dyn ContainerManager, id: &str) -> Vec<u8> {
    let chunks: Vec<_> = m
        .logs(id, &LogOptions::default().stderr(false))
        .await
        .expect("logs")
        .try_collect()
        .await
        .expect("read logs");
    chunks.iter().flat_map(|c| c.data.to_vec()).collect()
}

/// The numbers 0.. the container printed, checked to have no gap.
fn counted(out: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(out);
    let mut next = 0u64;
    for line in text.lines() {
        assert_eq!(line, next.to_string(), "a line is missing or out of order");
        next += 1;
    }
    next
}

async fn run(m: &dyn ContainerManager, name: &str, script: &str) -> String {
    let _ = m.remove(name, true).await;
    let id = m
        .create(
            &ContainerConfig::new(IMAGE)
                .name(name)
                .cmd(["sh", "-c", script]),
        )
        .await
        .expect("create");
    m.start(&id).await.expect("start");
    id
}

#[test]
fn logs_are_bounded_and_outlive_the_program_that_started_the_container() {
    // One test in this binary: the namespace is set before any connection.
    std::env::set_var("CONTAINERD_NAMESPACE", NAMESPACE);
    let runtime = || tokio::runtime::Runtime::new().expect("runtime");

    // 1. A program starts a container that counts, then exits (its runtime is gone, and
    //    with it the pumps and their locks).
    let first = runtime();
    let (id, seen_by_first) = first.block_on(async {
        let m = manager().await;
        m.pull(IMAGE, &PullOptions::default()).await.expect("pull");
        let id = run(
            &m,
            "logs-resume",
            "i=0; while [ $i -lt 400 ]; do echo $i; i=$((i+1)); sleep 0.01; done; sleep 600",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let seen = counted(&stdout_of(&m, &id).await);
        (id, seen)
    });
    drop(first);
    assert!(
        seen_by_first > 0,
        "nothing was logged while the starter ran"
    );

    // 2. While nobody pumps, the output waits in the pipe; the next program resumes.
    std::thread::sleep(Duration::from_secs(2));
    let second = runtime();
    second.block_on(async {
        let m = manager().await;
        let mut total = 0;
        for _ in 0..100 {
            total = counted(&stdout_of(&m, &id).await);
            if total == 400 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(total, 400, "output written while no program pumped is lost");
        assert!(total > seen_by_first);
        m.remove(&id, true).await.expect("remove");

        // 3. Bounded: 5 bounds' worth of output keeps the newest bytes in at most
        //    ROTATED_FILES + 1 files of MAX_FILE_BYTES.
        let bound = MAX_FILE_BYTES * (ROTATED_FILES as u64 + 1);
        let blocks = (bound + MAX_FILE_BYTES) / 1024 / 1024;
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' 'x'; echo; echo the-end",
            blocks * 1024 * 1024
        );
        let id = run(&m, "logs-bounded", &script).await;
        assert_eq!(m.wait(&id).await.expect("wait"), 0);
        // The pump may still be copying what the process wrote last.
        let mut out = Vec::new();
        for _ in 0..100 {
            out = stdout_of(&m, &id).await;
            if out.ends_with(b"\nthe-end\n") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            out.ends_with(b"\nthe-end\n"),
            "the newest output is not at the end of the logs"
        );
        // A read racing a rotation may see one file more than the bound; now that the
        // last bytes are in, the files are final.
        let out = stdout_of(&m, &id).await;
        assert!(out.ends_with(b"\nthe-end\n"));
        assert!(
            out.len() as u64 <= bound,
            "{} bytes kept, bound {bound}",
            out.len()
        );
        assert!(
            out.len() as u64 > bound - MAX_FILE_BYTES,
            "too little kept: {}",
            out.len()
        );
        let dir = std::path::Path::new(STATE).join(&id);
        let files = std::fs::read_dir(&dir)
            .expect("log folder")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("stdout.log"))
            .count();
        assert_eq!(files, ROTATED_FILES + 1, "log files in {}", dir.display());
        m.remove(&id, true).await.expect("remove");
        assert!(!dir.exists(), "remove left the log folder");
    });
}
