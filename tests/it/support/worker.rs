//! Workers for tests: in-process (fast, for most tests) or as a real
//! `hookline worker` process (for SIGTERM and kill -9).

use std::time::Duration;

use hookline::config::NetworkPolicy;
pub use hookline::config::WorkerSettings;
use hookline::domain::retry::RetrySchedule;
use tokio::sync::watch;

use super::db::TestDb;

/// Settings for tests: loopback receivers allowed, quick polls.
pub fn test_settings() -> WorkerSettings {
    WorkerSettings {
        retry_schedule: RetrySchedule::parse("0.05,0.05").unwrap(),
        concurrency: 64,
        endpoint_share: 32,
        claim_batch: 32,
        poll_interval: Duration::from_millis(500),
        shutdown_grace: Duration::from_secs(5),
        network: NetworkPolicy { allow_private: true, ..NetworkPolicy::default() },
        secret_keys: super::test_keys(),
        ..WorkerSettings::default()
    }
}

pub struct RunningWorker {
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    pub async fn start(db: &TestDb, settings: WorkerSettings) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let config: tokio_postgres::Config = db.url.parse().unwrap();
        let task = tokio::spawn(hookline::worker::run(db.pool.clone(), config, settings, rx));
        RunningWorker { shutdown, task }
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("worker stops within 30 s")
            .expect("worker task")
            .expect("worker result");
    }
}

/// A child process that cannot outlive its test: killed when dropped (a
/// failing test unwinds past its own kill), and by the kernel when the
/// test's thread ends.
pub struct Process(std::process::Child);

impl Process {
    pub fn spawn(command: &mut std::process::Command) -> Process {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Process(command.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program())))
    }
}

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `hookline worker` as a child process, with extra environment.
pub fn spawn_process(db: &TestDb, env: &[(&str, &str)]) -> Process {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookline"));
    command
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOOKLINE_DATABASE_URL", &db.url)
        .env("HOOKLINE_SECRET_KEY", super::TEST_SECRET_KEY)
        .env("HOOKLINE_ALLOW_PRIVATE_NETWORKS", "true")
        .env("HOOKLINE_POOL_SIZE", "4")
        .env("HOOKLINE_LOG", "warn")
        .stdout(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Process::spawn(&mut command)
}
