//! A program under test: started with its log in a file, probed on its admin
//! endpoint, stopped with SIGTERM or SIGKILL, killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A local port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Debug)]
pub struct Process {
    pub child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
    name: String,
}

impl Process {
    /// Spawns `command` with stderr to `log`, and waits until its admin
    /// endpoint answers `/healthz`.
    pub fn start(name: &str, mut command: Command, admin: SocketAddr, log: &Path) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).expect("log file")))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let p = Self {
            child,
            admin,
            log: log.to_path_buf(),
            name: name.to_string(),
        };
        p.wait_until(
            "its admin endpoint answers",
            Duration::from_secs(30),
            || p.get("/healthz").is_some(),
        );
        p
    }

    /// `http://<admin><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// GET on the admin endpoint: (status, body), or `None` if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        crate::http::get(&self.url(path))
    }

    /// PUT of a JSON body on the admin endpoint.
    pub fn put(&self, path: &str, body: &str) -> Option<(u16, String)> {
        crate::http::put_json(&self.url(path), body)
    }

    /// Sum of a metric family's samples whose line contains `filter`; NaN when
    /// the endpoint does not answer.
    pub fn metric(&self, name: &str, filter: &str) -> f64 {
        match self.get("/metrics") {
            Some((200, text)) => crate::http::metric_sum(&text, name, filter),
            _ => f64::NAN,
        }
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
        if crate::wait::until(timeout, ok).is_err() {
            panic!(
                "timed out waiting until {what}; {} log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }

    /// The last 40 lines of the log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    pub fn sigkill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the exit status.
    /// SIGTERM, then exit 0 within `timeout`, or a panic with the log's end.
    pub fn stop_cleanly(self, timeout: Duration) {
        let log = self.log.clone();
        let name = self.name.clone();
        let status = self.sigterm(timeout);
        if !status.success() {
            panic!("{name} stopped with {status}, not 0; log:\n{}", tail(&log));
        }
    }

    pub fn sigterm(mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM; log:\n{tail}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 40 lines of a log file.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
