//! Everything a drill creates is owned by a guard that undoes it on drop:
//! first the etcd process (its whole process group: SIGKILL, then reaped),
//! then the temp dir. So a drill that fails, times out or is cancelled
//! (its future dropped) leaves neither a process nor a directory behind.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

/// Prefix of every drill's temp dir.
pub const DIR_PREFIX: &str = "omni-drill-";

/// A drill's temp dir and the etcd running in it.
pub struct Workspace {
    // Fields drop in order: the process goes before its data dir.
    etcd: Option<EtcdProcess>,
    dir: TempDir,
}

impl Workspace {
    /// A fresh `omni-drill-*` dir under `parent` (created if missing).
    pub fn create(parent: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(parent)?;
        Ok(Workspace { etcd: None, dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Hands the process to the workspace (stopping any previous one).
    pub fn set_etcd(&mut self, p: EtcdProcess) {
        self.etcd = Some(p);
    }

    pub fn etcd_mut(&mut self) -> Option<&mut EtcdProcess> {
        self.etcd.as_mut()
    }

    pub fn stop_etcd(&mut self) {
        self.etcd = None;
    }
}

/// Removes `omni-drill-*` dirs under `parent` left by a server that was
/// killed mid-drill. Returns how many went.
pub fn sweep_stale(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(DIR_PREFIX)
            && e.file_type().is_ok_and(|t| t.is_dir());
        if stale && std::fs::remove_dir_all(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}

/// An etcd process in its own process group; killed with the group and
/// reaped on drop.
pub struct EtcdProcess {
    child: Child,
    log: PathBuf,
}

impl EtcdProcess {
    /// Spawns `cmd` with output to `log`, in a new process group, asking
    /// the kernel to kill it should the server itself die (`PDEATHSIG`).
    pub fn spawn(mut cmd: Command, log: &Path) -> io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: between fork and exec only prctl(2), which is
        // async-signal-safe, runs; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
            });
        }
        let child = cmd.spawn()?;
        Ok(EtcdProcess {
            child,
            log: log.to_path_buf(),
        })
    }

    /// The exit status once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The last 1 KiB of its log.
    pub fn log_tail(&self) -> String {
        match std::fs::read(&self.log) {
            Ok(bytes) => {
                let start = bytes.len().saturating_sub(1024);
                String::from_utf8_lossy(&bytes[start..]).trim().to_string()
            }
            Err(e) => format!("(no log: {e})"),
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // The group id is the child's pid (process_group(0)); errors mean
        // it is gone already.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a program: a path with a `/` as given, a bare name on `PATH`.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A zombie is dead for our purposes; drop reaps, so it is gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    #[test]
    fn dropping_the_workspace_kills_the_group_and_removes_the_dir() {
        let parent = tempfile::tempdir().unwrap();
        let mut ws = Workspace::create(parent.path()).unwrap();
        let dir = ws.path().to_path_buf();
        // A shell that starts a grandchild in the same group: both must go.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("sleep 300 & echo $! > child.pid; wait");
        cmd.current_dir(&dir);
        let p = EtcdProcess::spawn(cmd, &dir.join("log")).unwrap();
        let shell = p.child.id();
        ws.set_etcd(p);
        let pid_file = dir.join("child.pid");
        let mut grandchild = None;
        for _ in 0..100 {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                grandchild = Some(pid);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let grandchild = grandchild.expect("the shell did not start its child");
        assert!(alive(shell) && alive(grandchild));
        drop(ws);
        assert!(!dir.exists(), "temp dir survived");
        assert!(!alive(shell), "the process survived");
        for _ in 0..100 {
            if !alive(grandchild) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "the process group survived");
    }

    #[test]
    fn stale_dirs_are_swept_and_others_kept() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(parent.path().join("omni-drill-old/data")).unwrap();
        std::fs::create_dir_all(parent.path().join("keep-me")).unwrap();
        assert_eq!(sweep_stale(parent.path()), 1);
        assert!(parent.path().join("keep-me").exists());
        assert!(!parent.path().join("omni-drill-old").exists());
    }

    #[test]
    fn programs_are_found_by_path_or_name() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("no-such-program-omni")).is_none());
        assert!(find_program(Path::new("/no/such/etcd")).is_none());
    }
}
