//! What a container gets of the caller (ADR 0013): its [`Account`], made at every start
//! by a root exec of the image's own `/bin/sh` (so it works on every engine, remote ones
//! included, and on any image with `/etc/passwd` and a POSIX shell, with no image
//! entrypoint); its ssh agent and proxy variables, resolved at create.

use std::borrow::Cow;

use super::exec::OwnExec;
use super::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::exec::ExecSpec;
use crate::labels::ACCOUNT_LABEL;
use crate::types::{Account, ContainerConfig, Labels, Mount, PROXY_VARIABLES, SSH_AGENT_TARGET};

/// Makes the account, idempotently; `$1`..`$4` are name, uid, gid and home, checked by
/// `validate` (no character a shell would read specially). Written for any POSIX shell
/// with `mkdir`, `chown` and `chmod` beside it (busybox's will do: no grep, awk or
/// useradd, which minimal images lack):
/// - `/etc/passwd`: every entry with the account's name or uid is replaced by its own
///   (root is never renamed: `validate` allows uid 0 only as `root`); the files are
///   rewritten in place, so a bind-mounted one (Podman's) stays the mount;
/// - `/etc/group`: a group with the gid is kept; otherwise one is added, named after the
///   account unless the image has a group of that name;
/// - the home: made (with its parents) and given to the account when missing; chowned
///   when it exists in the image; a mount point (a host folder bound there) is left as
///   it is, so no host folder is ever chowned.
const SCRIPT: &str = r#"set -eu
name=$1 uid=$2 gid=$3 home=$4
shell=/bin/sh
[ -x /bin/bash ] && shell=/bin/bash
others() {
  while IFS= read -r line || [ -n "$line" ]; do
    n=${line%%:*}; rest=${line#*:}; rest=${rest#*:}; i=${rest%%:*}
    if [ "$n" = "$2" ] || [ "$i" = "$3" ]; then continue; fi
    printf '%s\n' "$line"
  done < "$1"
}
has() {
  while IFS=: read -r n _ i _; do
    if [ "$2" = name ] && [ "$n" = "$3" ]; then return 0; fi
    if [ "$2" = id ] && [ "$i" = "$3" ]; then return 0; fi
  done < "$1"
  return 1
}
kept=$(others /etc/passwd "$name" "$uid")
{ [ -z "$kept" ] || printf '%s\n' "$kept"; printf '%s:x:%s:%s::%s:%s\n' "$name" "$uid" "$gid" "$home" "$shell"; } > /etc/passwd
if ! has /etc/group id "$gid"; then
  group=$name
  if has /etc/group name "$group"; then group=g$gid; fi
  printf '%s:x:%s:\n' "$group" "$gid" >> /etc/group
fi
mounted=no
while read -r _ _ _ _ point _; do
  if [ "$point" = "$home" ]; then mounted=yes; fi
done < /proc/self/mountinfo
if [ ! -e "$home" ]; then
  mkdir -p "$home"
  chown "$uid:$gid" "$home"
  chmod 0755 "$home"
elif [ "$mounted" = no ]; then
  chown "$uid:$gid" "$home"
fi
"#;

/// The account label's value: `uid:gid:name:home` (none of them holds a `:`).
pub(crate) fn label_value(a: &Account) -> String {
    format!("{}:{}:{}:{}", a.uid, a.gid, a.name, a.home)
}

/// The account a container was created with, from its labels.
pub(crate) fn from_labels(labels: &Labels) -> Option<Account> {
    let value = labels.get(ACCOUNT_LABEL)?;
    let mut parts = value.splitn(4, ':');
    let (uid, gid, name, home) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(Account::new(uid.parse().ok()?, gid.parse().ok()?, name).with_home(home))
}

/// `env` with `KEY=value` added unless it sets `key` already.
fn add_unset(env: &mut Vec<String>, key: &str, value: &str) {
    if !env
        .iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    {
        env.push(format!("{key}={value}"));
    }
}

/// The config the engine gets for `config`: the account's user and `HOME`, `USER`,
/// `LOGNAME`; the ssh agent's socket bound in with `SSH_AUTH_SOCK`; the proxy
/// variables; each env entry only where the config sets none. `host_env` reads the
/// caller's environment. The config hash stays the caller's config's (the options, not
/// the socket path or the proxy values of the day).
pub(crate) fn for_engine<'a>(
    config: &'a ContainerConfig,
    host_env: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'a, ContainerConfig>> {
    if config.account.is_none() && !config.ssh_agent && !config.host_proxies {
        return Ok(Cow::Borrowed(config));
    }
    let mut c = config.clone();
    if let Some(account) = &config.account {
        c.user = Some(account.user());
        add_unset(&mut c.env, "HOME", &account.home);
        add_unset(&mut c.env, "USER", &account.name);
        add_unset(&mut c.env, "LOGNAME", &account.name);
    }
    if config.ssh_agent {
        let socket = host_env("SSH_AUTH_SOCK")
            .filter(|s| s.starts_with('/'))
            .ok_or_else(|| {
                Error::invalid_input(
                    "ssh agent forwarding asked for, but SSH_AUTH_SOCK names no socket \
                     (is an agent running? `ssh-add -l` tells)",
                )
            })?;
        let is_socket = std::fs::metadata(&socket)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
        if !is_socket {
            return Err(Error::invalid_input(format!(
                "ssh agent forwarding asked for, but SSH_AUTH_SOCK ({socket}) is not a socket"
            )));
        }
        // The caller's own agent, asked for by name: under /run/user or /tmp alike.
        c.mounts
            .push(Mount::bind(&socket, SSH_AGENT_TARGET).allow_sensitive());
        add_unset(&mut c.env, "SSH_AUTH_SOCK", SSH_AGENT_TARGET);
    }
    if config.host_proxies {
        for key in PROXY_VARIABLES {
            if let Some(value) = host_env(key).filter(|v| !v.is_empty()) {
                add_unset(&mut c.env, key, &value);
            }
        }
    }
    Ok(Cow::Owned(c))
}

/// Makes `account` in the running container `id` (see [`SCRIPT`]).
pub(crate) async fn ensure<E: Engine>(
    engine: std::sync::Arc<E>,
    id: &str,
    account: &Account,
) -> Result<()> {
    let spec = ExecSpec::new([
        "/bin/sh".to_string(),
        "-c".to_string(),
        SCRIPT.to_string(),
        "sh".to_string(),
        account.name.clone(),
        account.uid.to_string(),
        account.gid.to_string(),
        account.home.clone(),
    ])
    .user(0, 0);
    let own = OwnExec::create_shared(engine.clone(), id, &spec).await?;
    let mut output = engine.exec_start(own.exec(), own.spec()).await?;
    let mut said = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut output).await {
        said.extend_from_slice(&chunk?.data);
    }
    own.succeeded(&engine, &said).await.map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "could not make the account {} ({}:{}) in the container: it needs \
                 `/etc/passwd` and `/bin/sh` with mkdir, chown and chmod: {}",
                account.name,
                account.uid,
                account.gid,
                e.message()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_round_trips() {
        let a = Account::new(1000, 100, "builder").with_home("/work/home");
        let mut labels = Labels::new();
        labels.insert(ACCOUNT_LABEL.to_string(), label_value(&a));
        assert_eq!(from_labels(&labels), Some(a));
        labels.insert(ACCOUNT_LABEL.to_string(), "x:1:a:/h".to_string());
        assert_eq!(from_labels(&labels), None);
    }

    #[test]
    fn the_config_s_own_env_wins() {
        let a = Account::new(1000, 1000, "builder");
        let config = ContainerConfig::new("x:1")
            .env("HOME", "/work")
            .env("no_proxy", "localhost")
            .account(a)
            .host_proxies(true);
        let host = |key: &str| match key {
            "http_proxy" => Some("http://127.0.0.1:3128".to_string()),
            "no_proxy" => Some("example.com".to_string()),
            "HTTPS_PROXY" => Some(String::new()),
            _ => None,
        };
        let c = for_engine(&config, host).expect("config");
        assert_eq!(
            c.env,
            [
                "HOME=/work",
                "no_proxy=localhost",
                "USER=builder",
                "LOGNAME=builder",
                "http_proxy=http://127.0.0.1:3128"
            ]
        );
        assert_eq!(c.user, Some(crate::types::User::new(1000, 1000)));
    }

    #[test]
    fn an_ssh_agent_is_a_socket_bound_in() {
        let config = ContainerConfig::new("x:1").ssh_agent(true);
        let e = for_engine(&config, |_| None).expect_err("no agent");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, b"").expect("file");
        let named = |_: &str| Some(file.display().to_string());
        let e = for_engine(&config, named).expect_err("a file");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let socket = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
        let named = |_: &str| Some(socket.display().to_string());
        let c = for_engine(&config, named).expect("a socket");
        assert_eq!(c.env, [format!("SSH_AUTH_SOCK={SSH_AGENT_TARGET}")]);
        assert_eq!(
            c.mounts,
            [Mount::bind(&socket, SSH_AGENT_TARGET).allow_sensitive()]
        );
    }

    /// Runs the script with the host's `sh` for `builder` (1000:1000) with home `home`,
    /// on a root at `root` made of `passwd` and `group`: paths rewritten beneath it,
    /// `/proc/self/mountinfo` read from `mountinfo`, `chown` replaced by `chown_with`.
    fn run_script(
        root: &std::path::Path,
        passwd: &str,
        group: &str,
        mountinfo: &str,
        chown_with: &str,
        home: &std::path::Path,
    ) {
        let etc = root.join("etc");
        std::fs::create_dir(&etc).expect("etc");
        std::fs::write(etc.join("passwd"), passwd).expect("passwd");
        std::fs::write(etc.join("group"), group).expect("group");
        let script = SCRIPT
            .replace("/etc/", &format!("{}/etc/", root.display()))
            .replace("/proc/self/mountinfo", mountinfo)
            .replace("chown ", chown_with);
        let status = std::process::Command::new("sh")
            .args(["-c", &script, "sh", "builder", "1000", "1000"])
            .arg(home)
            .status()
            .expect("sh");
        assert!(status.success());
    }

    /// The script itself, run by the host's `sh` on copies of passwd and group files
    /// (paths rewritten into a temporary folder).
    #[test]
    fn the_script_replaces_entries_by_name_or_uid_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("home/builder");
        run_script(
            dir.path(),
            "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/bash\nbuilder:x:1500:1500::/b:/bin/sh",
            "root:x:0:\nbuilder:x:1500:\n",
            "/dev/null",
            "true ",
            &home,
        );
        let etc = dir.path().join("etc");
        let passwd = std::fs::read_to_string(etc.join("passwd")).expect("passwd");
        let shell = if std::path::Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        assert_eq!(
            passwd,
            format!(
                "root:x:0:0:root:/root:/bin/bash\nbuilder:x:1000:1000::{}:{shell}\n",
                home.display()
            )
        );
        let group = std::fs::read_to_string(etc.join("group")).expect("group");
        assert_eq!(group, "root:x:0:\nbuilder:x:1500:\ng1000:x:1000:\n");
        assert!(home.is_dir());
    }

    /// A home that is a mount point (a host folder bound there) is never chowned; one
    /// the image has is given to the account.
    #[test]
    fn the_script_chowns_no_mount_point() {
        for mounted in [true, false] {
            let dir = tempfile::tempdir().expect("tmp");
            let home = dir.path().join("home");
            std::fs::create_dir(&home).expect("home");
            let mountinfo = dir.path().join("mountinfo");
            let point = if mounted {
                home.display().to_string()
            } else {
                "/".into()
            };
            std::fs::write(&mountinfo, format!("1 2 0:1 / {point} rw - ext4 x rw\n"))
                .expect("mountinfo");
            let log = dir.path().join("chowned");
            run_script(
                dir.path(),
                "root:x:0:0:root:/root:/bin/sh\n",
                "root:x:0:\n",
                &mountinfo.display().to_string(),
                &format!("echo >> {} ", log.display()),
                &home,
            );
            assert_eq!(log.exists(), !mounted, "mounted: {mounted}");
        }
    }
}
