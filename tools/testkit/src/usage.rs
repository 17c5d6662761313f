//! What a process under test holds, from `/proc`: threads, open files, TCP
//! connections to one port, resident memory and CPU time.

use procfs::process::{FDTarget, Process};

/// One reading of a process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub threads: i64,
    pub fds: usize,
    /// Established TCP connections to `port` (the broker's).
    pub connections: usize,
    pub rss_mib: f64,
    /// User and system CPU seconds since the process started.
    pub cpu_seconds: f64,
}

impl Usage {
    /// Reads `pid`'s resources now; panics if the process is gone.
    pub fn of(pid: u32, port: u16) -> Self {
        let pid = i32::try_from(pid).expect("a pid fits in i32");
        let p = Process::new(pid).expect("the process exists");
        let status = p.status().expect("its status");
        let stat = p.stat().expect("its stat");
        let ticks = procfs::ticks_per_second() as f64;
        Self {
            threads: stat.num_threads,
            fds: p.fd_count().expect("its open files"),
            connections: connections_to(&p, port),
            rss_mib: status.vmrss.unwrap_or_default() as f64 / 1024.0,
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        }
    }
}

/// The process's established TCP connections whose remote port is `port`.
fn connections_to(p: &Process, port: u16) -> usize {
    let sockets: std::collections::HashSet<u64> = p
        .fd()
        .map(|fds| {
            fds.filter_map(|fd| match fd.ok()?.target {
                FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .collect()
        })
        .unwrap_or_default();
    let tables = [p.tcp(), p.tcp6()];
    tables
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.remote_address.port() == port && sockets.contains(&e.inode))
        .filter(|e| e.state == procfs::net::TcpState::Established)
        .count()
}
