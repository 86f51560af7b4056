//! A throwaway PostgreSQL cluster started from the locally installed server
//! binaries: `hookline dev` runs on one, and so do the tests and the benchmark
//! when no server is configured. PostgreSQL refuses to run as root, so as root
//! the binaries run as the `postgres` system user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    pub port: u16,
}

impl LocalPostgres {
    /// Initialises `dir/data` if needed and starts a server on a free port of
    /// 127.0.0.1 with the extra `-c name=value` settings given.
    pub fn start(dir: &Path, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir().context(
            "no PostgreSQL server binaries found (install postgresql, or set HOOKLINE_PG_BIN to the folder holding initdb)",
        )?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir))?;
        }
        let data_dir = dir.join("data");
        let this = Self { bin_dir, socket_dir: dir.clone(), data_dir, port: free_port()? };
        if !this.data_dir.join("PG_VERSION").exists() {
            run(this.tool("initdb").arg("-D").arg(&this.data_dir).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]))
            .context("initdb failed")?;
        }
        if this.tool("pg_ctl").arg("status").arg("-D").arg(&this.data_dir).output()?.status.success() {
            // Left running by a process that was killed: restart it on our port.
            let _ = run(this.tool("pg_ctl").arg("stop").arg("-D").arg(&this.data_dir).args(["-m", "immediate"]));
        }
        let mut options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", this.port, this.socket_dir.display());
        for (name, value) in settings {
            options.push_str(&format!(" -c {name}={value}"));
        }
        run(this
            .tool("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&this.data_dir)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options]))
        .with_context(|| format!("starting PostgreSQL failed (log: {})", dir.join("server.log").display()))?;
        Ok(this)
    }

    /// The URL of database `dbname` on this server.
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// The postmaster's process id (its children are the backends).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    pub fn stop(&self) -> anyhow::Result<()> {
        run(self.tool("pg_ctl").arg("stop").arg("-D").arg(&self.data_dir).args(["-m", "fast"]))
    }

    /// Stops the server as a crash would (no shutdown checkpoint: it
    /// recovers from the WAL) and starts it again on the same port and
    /// settings; returns once it accepts connections.
    pub fn crash_and_restart(&self) -> anyhow::Result<()> {
        // With its log file, as at start: a postmaster writing to pg_ctl's
        // output would keep it open, and waiting for that would never end.
        run(self
            .tool("pg_ctl")
            .arg("restart")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.socket_dir.join("server.log"))
            .args(["-m", "immediate", "-w", "-t", "60"]))
    }

    /// A shell command that stops this server once process `pid` has exited:
    /// test processes cannot run code at exit, so a watchdog does it for them.
    pub fn stop_when_process_exits(&self, pid: u32, remove: &Path) -> anyhow::Result<()> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let prefix = if is_root() { "runuser -u postgres -- " } else { "" };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {prefix}{} stop -D {} -m immediate >/dev/null 2>&1; rm -rf {}",
            pg_ctl.display(),
            self.data_dir.display(),
            remove.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(())
    }

    fn tool(&self, name: &str) -> Command {
        let path = self.bin_dir.join(name);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }
}

/// `HOOKLINE_PG_BIN`, then `pg_config --bindir`, then the newest
/// `/usr/lib/postgresql/*/bin`, then `initdb` on the PATH.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("HOOKLINE_PG_BIN").map(PathBuf::from) {
        return has_initdb(&dir).then_some(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_initdb(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .find(|dir| has_initdb(dir))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{:?} failed: {}", command.get_program(), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
