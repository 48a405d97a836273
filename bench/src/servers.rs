//! The servers under test, each its own child process so its CPU time and memory are its own:
//! baseline A (this binary's `baseline` subcommand) and the gateway (this binary's `ketenpoort` subcommand, which
//! runs `ketenpoort::cli` exactly as the `ketenpoort` binary does). CPU and RSS come from `/proc/<pid>`.

use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Server {
    pub name: String,
    child: Child,
    pub addr: SocketAddr,
    pub ops: Option<SocketAddr>,
    pub started_to_ready: Duration,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, so the gateway flushes its log as in a normal shutdown; SIGKILL after 15 s.
    pub fn stop(self) {
        drop(self);
    }

    /// GET on the ops listener (plain HTTP/1.0, loopback).
    pub fn ops_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let ops = self
            .ops
            .ok_or_else(|| anyhow!("{} has no ops listener", self.name))?;
        http_get(ops, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This binary again, as a child that dies with the benchmark (so an aborted run leaves no server behind).
pub fn child_command() -> anyhow::Result<Command> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe()?);
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    Ok(cmd)
}

pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status from {addr}{path}"))?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

/// Reads the first stdout line (`... partner=https://ADDR ops=http://ADDR`) of a starting server.
fn wait_for_listen_line(child: &mut Child, what: &str, stderr: &Path) -> anyhow::Result<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
        let _ = child.kill();
        anyhow!(
            "{what} did not start: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    })
}

fn field(line: &str, name: &str) -> anyhow::Result<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .and_then(|v| v.split("://").nth(1))
        .ok_or_else(|| anyhow!("no {name} in {line:?}"))?
        .parse()
        .context("listen address")
}

pub fn spawn_baseline(certs: &Path, dir: &Path) -> anyhow::Result<Server> {
    let stderr = dir.join("baseline.stderr");
    let mut child = child_command()?
        .arg("baseline")
        .arg("--certs")
        .arg(certs)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()?;
    let line = wait_for_listen_line(&mut child, "baseline", &stderr)?;
    Ok(Server {
        name: "baseline A".into(),
        addr: field(&line, "partner=")?,
        ops: None,
        started_to_ready: Duration::ZERO,
        child,
    })
}

pub struct GatewaySetup {
    pub dir: PathBuf,
    pub database_url: String,
    pub key_dir: PathBuf,
    pub certs: PathBuf,
    pub policies: PathBuf,
    pub batch_max: usize,
}

impl GatewaySetup {
    /// The benchmark's configuration: the committed example certificates and policies, durable storage (the
    /// gateway refuses non-durable settings), and quotas raised so that the load generator measures the
    /// gateway's capacity rather than its per-partner rate limit.
    pub fn write_config(&self) -> anyhow::Result<PathBuf> {
        let c = &self.certs;
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"

[tls]
ca = "{ca}"
crl = "{crl}"
cert = "{cert}"
key = "{key}"
partners = "{partners}"

[storage]
database_url = "{db}"
key_dir = "{keys}"

[policies]
dir = "{policies}"

[log]
batch_max = {batch_max}

[limits]
rate_per_second = 4000000000
burst = 4000000000
max_connections_per_partner = 100000
"#,
            ca = c.join("ca.crt").display(),
            crl = c.join("crl.pem").display(),
            cert = c.join("gateway.crt").display(),
            key = c.join("gateway.key").display(),
            partners = c.join("partners.toml").display(),
            db = self.database_url,
            keys = self.key_dir.display(),
            policies = self.policies.display(),
            batch_max = self.batch_max,
        );
        let path = self.dir.join("ketenpoort.toml");
        std::fs::write(&path, config)?;
        Ok(path)
    }
}

/// Starts the gateway and returns once `/readyz` answers 200; `started_to_ready` is spawn → first 200.
pub fn spawn_gateway(setup: &GatewaySetup, name: &str) -> anyhow::Result<Server> {
    let config = setup
        .write_config()
        .context("writing the gateway configuration")?;
    let stderr = setup
        .dir
        .join(format!("{}.stderr", name.replace([' ', '(', ')'], "")));
    let started = Instant::now();
    let mut child = child_command()?
        .args(["ketenpoort", "serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).context("gateway stderr file")?)
        .spawn()
        .context("starting the gateway")?;
    let line = wait_for_listen_line(&mut child, "gateway", &stderr)?;
    let addr = field(&line, "partner=")?;
    let ops = field(&line, "ops=")?;
    loop {
        if let Ok((200, _)) = http_get(ops, "/readyz") {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("gateway not ready after 60 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Server {
        name: name.to_owned(),
        addr,
        ops: Some(ops),
        started_to_ready: started.elapsed(),
        child,
    })
}

/// CPU time (user + system) of a process, in microseconds.
pub fn cpu_micros(pid: u32) -> anyhow::Result<u64> {
    stat_cpu_micros(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User + system time (µs) of the calling thread so far.
pub fn this_thread_cpu_micros() -> anyhow::Result<u64> {
    stat_cpu_micros(&std::fs::read_to_string("/proc/thread-self/stat")?)
}

/// User + system time (µs) in the text of a `/proc/.../stat` file (a process's or a thread's).
fn stat_cpu_micros(stat: &str) -> anyhow::Result<u64> {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("bad /proc stat"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Ok(ticks * 1_000_000 / hz.max(1))
}

/// Resident set size now, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS"))
}

/// Samples a process's RSS every 20 ms until stopped; keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Peak RSS in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// A gauge or counter value from the Prometheus text of `/metrics`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok())?
    })
}

/// What a thread of the gateway is, by its name (`/proc/PID/task/TID/comm`, 15 characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadRole {
    /// `ketenpoort-log-writer`: the log writer's loop on SQLite (encoding, hashing, the rows, the commit).
    LogWriter,
    /// `ketenpoort-wal-checkpoint`: copies the WAL back into the database file.
    Checkpointer,
    /// Everything else: tokio's workers (TLS, HTTP, the request's phases), its blocking pool, the main thread.
    Other,
}

impl ThreadRole {
    fn of(comm: &str) -> ThreadRole {
        if comm.starts_with("ketenpoort-log-") {
            ThreadRole::LogWriter
        } else if comm.starts_with("ketenpoort-wal-") {
            ThreadRole::Checkpointer
        } else {
            ThreadRole::Other
        }
    }
}

/// CPU time (µs, user + system) and bytes handed to `write`-family calls (`wchar`: files and sockets alike).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ThreadUse {
    pub cpu_us: u64,
    pub written: u64,
}

/// Every thread of `pid` now: (tid, role, use so far). A thread that ends between two snapshots takes its use with it.
pub fn threads(pid: u32) -> anyhow::Result<Vec<(u32, ThreadRole, ThreadUse)>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = dir?.path();
        let Some(tid) = dir.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
            continue;
        };
        // A thread may end while it is read: skip it.
        let (Ok(comm), Ok(stat), Ok(io)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("io")),
        ) else {
            continue;
        };
        let cpu_us = stat_cpu_micros(&stat)?;
        let written = io
            .lines()
            .find_map(|l| l.strip_prefix("wchar:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no wchar in /proc task io"))?;
        out.push((
            tid,
            ThreadRole::of(comm.trim_end()),
            ThreadUse { cpu_us, written },
        ));
    }
    Ok(out)
}

/// Use between two snapshots of `threads`, summed per role (threads new in `after` count from zero).
pub fn thread_use_between(
    before: &[(u32, ThreadRole, ThreadUse)],
    after: &[(u32, ThreadRole, ThreadUse)],
    role: ThreadRole,
) -> ThreadUse {
    let mut sum = ThreadUse::default();
    for (tid, r, now) in after.iter().filter(|(_, r, _)| *r == role) {
        let was = before
            .iter()
            .find(|(t, b, _)| t == tid && b == r)
            .map(|(_, _, u)| *u)
            .unwrap_or_default();
        sum.cpu_us += now.cpu_us.saturating_sub(was.cpu_us);
        sum.written += now.written.saturating_sub(was.written);
    }
    sum
}

/// The most memory `prefault_memory` writes: more than the page cache of a full run's files.
const PREFAULT_MAX: u64 = 12 << 30;
/// What `prefault_memory` leaves untouched of the memory available.
const PREFAULT_SPARE: u64 = 4 << 30;

/// Writes one byte into every page of most of the available memory, then frees it. On a virtual machine whose memory
/// the host backs only when the guest first writes it (this kind: ~2.5 s a GiB, against ~0.2 s for memory written
/// before), the page cache of files the run writes would otherwise pay that first write, ~9 µs a 4 KiB page, in the
/// rows that happen to grow it into memory never used since boot. A long-running server's machine has long since
/// written its memory, so the run starts from that state. Returns a sentence for the report.
pub fn prefault_memory() -> anyhow::Result<String> {
    const GIB: u64 = 1 << 30;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let available_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no MemAvailable in /proc/meminfo"))?;
    let target = (available_kib * 1024)
        .saturating_sub(PREFAULT_SPARE)
        .min(PREFAULT_MAX)
        / GIB;
    let started = Instant::now();
    let mut held = Vec::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..target {
        let t = Instant::now();
        let mut chunk = vec![0u8; GIB as usize];
        for page in chunk.chunks_mut(4096) {
            page[0] = 1;
        }
        // Freed unread, the writes could be optimised away.
        std::hint::black_box(&chunk);
        held.push(chunk);
        slowest = slowest.max(t.elapsed());
    }
    drop(held);
    Ok(format!(
        "Memory: before the first row, {target} GiB of memory ({:.1} GiB were available) was written once, a byte a \
         page, and freed again, in {:.1} s (slowest GiB {:.2} s), so that no row pays the first write to memory this \
         virtual machine has not used since it booted (*Method*).",
        available_kib as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A thread is found by its name, and what it wrote and spent between two snapshots is its role's.
    #[test]
    fn a_threads_use_is_counted_under_its_role() {
        assert_eq!(ThreadRole::of("ketenpoort-log-"), ThreadRole::LogWriter);
        assert_eq!(ThreadRole::of("ketenpoort-wal-"), ThreadRole::Checkpointer);
        assert_eq!(ThreadRole::of("tokio-rt-worker"), ThreadRole::Other);
        let me = std::process::id();
        let before = threads(me).unwrap();
        let (wrote, written) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::Builder::new()
            .name("ketenpoort-log-writer".into())
            .spawn(move || {
                let mut null = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .unwrap();
                for _ in 0..256 {
                    null.write_all(&[0u8; 4096]).unwrap();
                }
                wrote.send(()).unwrap();
                // Alive until the second snapshot is taken.
                finished.recv().unwrap();
            })
            .unwrap();
        written.recv().unwrap();
        let after = threads(me).unwrap();
        finish.send(()).unwrap();
        writer.join().unwrap();
        let log_writer = thread_use_between(&before, &after, ThreadRole::LogWriter);
        assert!(
            log_writer.written >= 256 * 4096,
            "the named thread's 1 MiB is counted: {log_writer:?}"
        );
        assert_eq!(
            thread_use_between(&before, &after, ThreadRole::Checkpointer),
            ThreadUse::default(),
            "no thread of this process is a checkpointer"
        );
    }
}
