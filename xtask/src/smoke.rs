//! The `containerctl` smoke test CI runs against Docker: run, exec (exit code, timeout),
//! ps, volume, and the force cleanup, which must leave a container made with the engine's
//! own CLI alone.

use anyhow::{bail, ensure};
use xshell::{cmd, Shell};

const IMAGE: &str = crate::engines::BUSYBOX_IMAGE;

/// Runs the sequence; fails on the first unexpected answer.
pub(crate) fn containerctl(sh: &Shell) -> anyhow::Result<()> {
    cmd!(sh, "cargo build --quiet -p containerctl").run()?;
    // Where cargo put it: CARGO_TARGET_DIR when set (relative to the workspace), else target/.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target".into());
    let ctl = sh.current_dir().join(target).join("debug/containerctl");
    let session = format!("smoke{}", std::process::id());
    let owner = "container-rs-smoke";
    let base = [
        "--owner".to_string(),
        owner.to_string(),
        "--session".to_string(),
        session.clone(),
    ];
    let base = base.as_slice();
    let name = format!("crs-{session}-ctl");
    let foreign = format!("crs-{session}-foreign");

    let id = cmd!(
        sh,
        "{ctl} {base...} run --name {name} --init {IMAGE} sleep infinity"
    )
    .read()?;
    let again = cmd!(
        sh,
        "{ctl} {base...} run --name {name} --init {IMAGE} sleep infinity"
    )
    .read()?;
    ensure!(
        id == again,
        "run is not idempotent by name: {id} vs {again}"
    );

    let out = cmd!(
        sh,
        "{ctl} {base...} exec {name} sh -c 'echo -n out; exit 3'"
    )
    .ignore_status()
    .output()?;
    ensure!(out.stdout == b"out", "exec stdout {:?}", out.stdout);
    ensure!(out.status.code() == Some(3), "exec exit {:?}", out.status);

    let timed = cmd!(sh, "{ctl} {base...} exec --timeout 1 {name} sleep 100")
        .ignore_status()
        .output()?;
    ensure!(
        timed.status.code() == Some(124),
        "timeout exit {:?}",
        timed.status
    );
    let ps = cmd!(sh, "{ctl} {base...} exec {name} ps").read()?;
    ensure!(
        !ps.contains("sleep 100"),
        "the timed-out command still runs:\n{ps}"
    );

    let listed = cmd!(sh, "{ctl} {base...} ps --session-only").read()?;
    ensure!(listed.contains(&name), "ps does not list {name}:\n{listed}");
    let volume = format!("crs-{session}-vol");
    cmd!(sh, "{ctl} {base...} volume create {volume}").run()?;

    cmd!(
        sh,
        "docker run -d --name {foreign} --network none {IMAGE} sleep 300"
    )
    .quiet()
    .ignore_stdout()
    .run()?;
    let refused = cmd!(sh, "{ctl} {base...} rm -f {foreign}")
        .ignore_status()
        .output()?;
    let result = (|| {
        ensure!(!refused.status.success(), "rm removed a foreign container");
        cmd!(sh, "{ctl} {base...} cleanup").run()?;
        let format = "{{.Names}}";
        let names = cmd!(sh, "docker ps -a --format {format}").read()?;
        ensure!(
            names.lines().any(|n| n == foreign),
            "cleanup removed the foreign container"
        );
        ensure!(!names.lines().any(|n| n == name), "cleanup left {name}");
        let volumes = cmd!(sh, "docker volume ls -q").read()?;
        if volumes.lines().any(|v| v == volume) {
            bail!("cleanup left volume {volume}");
        }
        Ok(())
    })();
    cmd!(sh, "docker rm -f {foreign}")
        .quiet()
        .ignore_stdout()
        .run()?;
    result?;
    println!("containerctl smoke: ok");
    Ok(())
}
