//! The server under test as a separate process: started from the binary built
//! beside this one, watched for memory, stopped with SIGTERM.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use partnership_metrics::cli::load::connect;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// How to start the server under test.
pub struct Binary {
    pub path: PathBuf,
    /// Its `--worker-threads`; 0 leaves its default.
    pub threads: u16,
    /// Extra environment for every server started (`--server-env`).
    pub env: Vec<(String, String)>,
    /// CPUs the server is pinned to (`taskset -c`), `--server-cpus`.
    pub cpus: Option<String>,
}

/// The `partnership-metrics` binary of the same build (profile) as this one.
pub fn server_binary(
    threads: u16,
    env: Vec<(String, String)>,
    cpus: Option<String>,
) -> anyhow::Result<Binary> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name("partnership-metrics");
    if !path.exists() {
        bail!("{} not found: build it with `cargo build --release --bins`", path.display());
    }
    Ok(Binary { path, threads, env, cpus })
}

pub struct Server {
    child: Child,
    pub target: String,
    pub started: Duration,
    peak_rss: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
    /// (time since start, VmRSS KiB) every 50 ms.
    samples: Arc<std::sync::Mutex<Vec<(Duration, u64)>>>,
}

/// A process's command name and its CPU seconds, from /proc/<pid>/stat: user and
/// system time, and with `children` also that of its children it has reaped.
fn stat_cpu(pid: u32, children: bool) -> Option<(String, f64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?, children)
}

fn parse_stat(stat: &str, children: bool) -> Option<(String, f64)> {
    // The command name is in parentheses and may hold spaces; the fields follow it.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // utime, stime, cutime, cstime.
    let times = fields.get(11..if children { 15 } else { 13 })?;
    let ticks = times.iter().map(|f| f.parse::<f64>().ok()).sum::<Option<f64>>()?;
    // SC_CLK_TCK is 100 on Linux.
    Some((stat[open + 1..close].to_string(), ticks / 100.0))
}

/// CPU seconds a process has used (user and system), from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu(pid, false).map(|(_, s)| s)
}

/// CPU seconds every PostgreSQL process on this machine has used, backends that have
/// exited included (through the postmaster's time of its reaped children), so that a
/// difference over a run is PostgreSQL's share of it. 0 when none runs here.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat_cpu(pid, true).filter(|(name, _)| name == "postgres").map(|(_, s)| s))
        .sum()
}

/// CPU seconds every core of the machine has been busy (all but idle and iowait), from
/// /proc/stat: a difference over a run, divided by its length, is the cores in use.
pub fn machine_busy_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat").ok().as_deref().and_then(busy_seconds).unwrap_or(0.0)
}

fn busy_seconds(stat: &str) -> Option<f64> {
    // cpu user nice system idle iowait irq softirq steal ...
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = cpu.split_whitespace().take(8).map(|t| t.parse().ok()).collect::<Option<_>>()?;
    (ticks.len() == 8).then(|| (ticks.iter().sum::<f64>() - ticks[3] - ticks[4]) / 100.0)
}

/// The server's CPU seconds and PostgreSQL's, now: differences of two are a run's.
pub fn cpu_now(server_pid: u32) -> (f64, f64) {
    (cpu_seconds(server_pid).unwrap_or(0.0), postgres_cpu_seconds())
}

/// Resident memory of a process, in KiB, from /proc (`VmRSS` now, `VmHWM` peak).
pub fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

impl Server {
    /// Starts the server on `database_url` at `port` and waits until it reports
    /// SERVING; `started` is the time from spawn to SERVING.
    pub async fn start(bin: &Binary, database_url: &str, port: u16) -> anyhow::Result<Server> {
        Server::start_with(bin, database_url, port, &[]).await
    }

    /// As [`Server::start`], with extra environment variables.
    pub async fn start_with(
        bin: &Binary,
        database_url: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let target = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        // taskset execs the server, so the child's pid is the server's.
        let mut command = match &bin.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&bin.path);
                c
            }
            None => Command::new(&bin.path),
        };
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--shutdown-grace-secs", "30"]);
        if bin.threads > 0 {
            command.args(["--worker-threads", &bin.threads.to_string()]);
        }
        let mut child = command
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .envs(bin.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.path.display()))?;
        let deadline = t0 + Duration::from_secs(120);
        loop {
            if Instant::now() > deadline {
                bail!("server on {target} not SERVING after 120 s");
            }
            if let Some(status) = child.try_wait()? {
                bail!("server for {target} exited before SERVING: {status}");
            }
            if let Ok(channel) = connect(&target).await {
                let mut health = HealthClient::new(channel);
                if let Ok(r) = health.check(HealthCheckRequest { service: String::new() }).await
                    && r.into_inner().status == ServingStatus::Serving as i32
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let started = t0.elapsed();
        // For bench/profile.sh, which attaches perf to this process.
        eprintln!("[pm-bench] server pid {} serving on {target}", child.id());
        let peak_rss = Arc::new(AtomicU64::new(0));
        let sampling = Arc::new(AtomicBool::new(true));
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (pid, peak, on, log) = (child.id(), peak_rss.clone(), sampling.clone(), samples.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while on.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                    if let Ok(mut log) = log.lock() {
                        log.push((t0.elapsed(), kib));
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Ok(Server { child, target, started, peak_rss, sampling, samples })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The highest RSS sampled since the last reset, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss.load(Ordering::Relaxed) as f64 / 1024.0
    }

    /// Peak RSS (MiB) over the first and the second half of the window from `from`
    /// to now: equal halves mean memory flat in the length of the work.
    pub fn peak_halves_mib(&self, from: Duration) -> (f64, f64) {
        let Ok(samples) = self.samples.lock() else { return (f64::NAN, f64::NAN) };
        let to = samples.last().map_or(from, |s| s.0);
        let mid = from + (to.saturating_sub(from)) / 2;
        let peak = |a: Duration, b: Duration| {
            samples.iter().filter(|s| s.0 >= a && s.0 <= b).map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0
        };
        (peak(from, mid), peak(mid, to))
    }

    /// Time since the sampler started, to mark the start of a piece of work.
    pub fn now(&self) -> Duration {
        self.samples.lock().ok().and_then(|s| s.last().map(|x| x.0)).unwrap_or_default()
    }

    /// The kernel's own high-water mark since start, in MiB.
    pub fn hwm_mib(&self) -> f64 {
        rss_kib(self.pid(), "VmHWM:").unwrap_or(0) as f64 / 1024.0
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.sampling.store(false, Ordering::Relaxed);
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("server exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::{busy_seconds, parse_stat};

    #[test]
    fn busy_seconds_count_every_state_but_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice, in ticks.
        let stat = "cpu  100 20 30 5000 70 5 15 10 0 0\ncpu0 50 10 15 2500 35 2 7 5 0 0\n";
        assert_eq!(busy_seconds(stat), Some(1.8));
        assert_eq!(busy_seconds("cpu0 1 2 3 4 5 6 7 8\n"), None, "only the machine's line counts");
        assert_eq!(busy_seconds("cpu  1 2 3\n"), None);
        assert_eq!(busy_seconds("cpu  1 2 3 x 5 6 7 8\n"), None);
    }

    #[test]
    fn a_stat_line_gives_its_name_and_cpu_whatever_the_name_holds() {
        // pid (comm) state ppid ... utime=150 stime=50 cutime=300 cstime=100 (fields 14-17).
        let line = "42 (post) gres)) S 1 42 42 0 -1 4194304 10 0 0 0 150 50 300 100 20 0 1 0 5 0 0";
        assert_eq!(parse_stat(line, false), Some(("post) gres)".to_string(), 2.0)));
        assert_eq!(parse_stat(line, true), Some(("post) gres)".to_string(), 6.0)));
        assert_eq!(parse_stat("42 (short) S 1 2", false), None);
        assert_eq!(parse_stat("42 (x) S 1 42 42 0 -1 4194304 10 0 0 0 abc 50 0 0", false), None);
    }
}
