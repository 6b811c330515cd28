//! A real Slurm cluster on loopback for tests (Debian 12's Slurm 22.05, run as root): a private
//! munged, slurmctld and `n` slurmd nodes on one host, every file (key, socket, configuration,
//! state, spool, logs) under one temporary directory, each daemon a foreground child of the test.
//! Dropping the cluster cancels its jobs, kills whatever still runs with its configuration and
//! stops the daemons by pid — on a failed test too (the directory is then kept for its logs).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Slurm job states after which a job never runs again.
const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// A running test cluster.
pub struct Slurm {
    /// Temporary directory holding everything.
    pub dir: PathBuf,
    /// Its `slurm.conf` (exported as `SLURM_CONF` to every command and job).
    pub conf: PathBuf,
    /// Node names, `n1`…
    pub nodes: Vec<String>,
    /// Daemons, in start order: munged, slurmctld, slurmd…
    daemons: Vec<(String, Child)>,
}

/// One record of `scontrol -o show job`: `Key=Value` fields (`JobId`, `ArrayTaskId`,
/// `JobState`, `ExitCode`, `Restarts`, `StdOut`…).
#[derive(Debug, Clone)]
pub struct Job(pub HashMap<String, String>);

impl Job {
    /// A field, or "" when absent.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or("")
    }

    /// `JobState`.
    pub fn state(&self) -> &str {
        self.get("JobState")
    }

    /// Whether the job will never run again.
    pub fn finished(&self) -> bool {
        TERMINAL.contains(&self.state())
    }
}

/// A process seen in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Command line.
    pub cmdline: Vec<String>,
    /// Environment, as `KEY=VALUE` entries.
    pub environ: Vec<String>,
    /// User + system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
}

impl Proc {
    /// The value of environment variable `key`.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.environ
            .iter()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Every process whose /proc entries can be read (entries vanishing meanwhile are skipped).
pub fn processes() -> Vec<Proc> {
    let split = |b: Vec<u8>| -> Vec<String> {
        b.split(|&c| c == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let p = e.path();
        let (Ok(cmd), Ok(env), Ok(stat)) = (
            std::fs::read(p.join("cmdline")),
            std::fs::read(p.join("environ")),
            std::fs::read_to_string(p.join("stat")),
        ) else {
            continue;
        };
        // utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        out.push(Proc {
            pid,
            cmdline: split(cmd),
            environ: split(env),
            cpu_ticks: tick(11) + tick(12),
        });
    }
    out
}

/// Makes the child get SIGTERM if the test dies without dropping the cluster (killed runner).
fn die_with_parent(c: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// `n` distinct free loopback ports, all held bound until every one is chosen.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `ok` every 50 ms until it holds; panics with `what` and `diag()` after `secs` seconds.
pub fn poll(secs: u64, what: &str, mut ok: impl FnMut() -> bool, diag: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} (after {secs} s)\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Slurm {
    /// Starts munged, slurmctld and `nodes` slurmd with `cpus` CPUs each; returns once every
    /// node is idle.
    pub fn start(nodes: usize, cpus: u32) -> Slurm {
        for bin in ["munged", "mungekey", "slurmctld", "slurmd", "sbatch"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {bin}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{bin} not found: scripts/setup.sh installs slurmctld slurmd slurm-client munge"
            );
        }
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the Slurm test cluster runs its daemons as root"
        );
        // Short paths (in /tmp whatever TMPDIR says): the munge socket path must fit in
        // sockaddr_un.
        let dir = tempfile::Builder::new()
            .prefix("abr-slurm-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        for d in ["key", "munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let mode = |p: &Path, m: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        // munged refuses group/other-writable directories on the way to its files; its socket
        // directory must be searchable by all.
        mode(&dir, 0o755);
        mode(&dir.join("key"), 0o700);
        mode(&dir.join("munge"), 0o755);
        let names: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
        let conf = dir.join("slurm.conf");
        let mut s = Slurm {
            dir: dir.clone(),
            conf: conf.clone(),
            nodes: names.clone(),
            daemons: Vec::new(),
        };

        let key = dir.join("key/munge.key");
        let o = Command::new("mungekey")
            .args(["--create", "--bits", "1024", "--keyfile"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success(), "mungekey: {o:?}");
        let sock = dir.join("munge/munge.socket");
        let mut munged = Command::new("munged");
        die_with_parent(&mut munged);
        let munged = munged
            .args(["--foreground", "--force"])
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!(
                "--log-file={}",
                dir.join("log/munged.log").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.join("munge/munged.pid").display()
            ))
            .arg(format!("--seed-file={}", dir.join("munge/seed").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log/munged.err")).unwrap())
            .spawn()
            .expect("spawn munged");
        s.daemons.push(("munged".into(), munged));
        poll(
            20,
            "munged not answering",
            || {
                let cred = Command::new("munge")
                    .arg(format!("--socket={}", sock.display()))
                    .arg("--no-input")
                    .output();
                cred.is_ok_and(|c| {
                    c.status.success()
                        && Command::new("unmunge")
                            .arg(format!("--socket={}", sock.display()))
                            .stdin(Stdio::piped())
                            .stdout(Stdio::null())
                            .spawn()
                            .and_then(|mut ch| {
                                use std::io::Write;
                                ch.stdin.take().unwrap().write_all(&c.stdout)?;
                                ch.wait()
                            })
                            .is_ok_and(|st| st.success())
                })
            },
            || s.logs(),
        );

        let ports = free_ports(1 + nodes);
        std::fs::write(&conf, slurm_conf(&dir, &sock, &ports, &names, cpus)).unwrap();
        let ctld = s
            .daemon_command("slurmctld")
            .args(["-D", "-i"])
            .spawn()
            .expect("spawn slurmctld");
        s.daemons.push(("slurmctld".into(), ctld));
        poll(
            30,
            "slurmctld not up",
            || s.output("scontrol", &["ping"]).contains("is UP"),
            || s.logs(),
        );
        for n in &names {
            let d = s
                .daemon_command("slurmd")
                .args(["-D", "-N", n])
                .spawn()
                .expect("spawn slurmd");
            s.daemons.push((format!("slurmd {n}"), d));
        }
        poll(
            60,
            "slurm nodes not idle",
            || {
                let out = s.output("sinfo", &["-h", "-N", "-o", "%N %T"]);
                let idle = out
                    .lines()
                    .filter(|l| l.split_whitespace().nth(1) == Some("idle"))
                    .count();
                idle == nodes
            },
            || s.logs(),
        );
        s
    }

    /// A daemon in the foreground, its stdout/stderr in `log/<name>.out`.
    fn daemon_command(&self, prog: &str) -> Command {
        let n = self.daemons.len();
        let f = std::fs::File::create(self.dir.join(format!("log/{prog}-{n}.out"))).unwrap();
        let mut c = self.command(prog);
        c.stdout(f.try_clone().unwrap()).stderr(f);
        die_with_parent(&mut c);
        c
    }

    /// A Slurm client (or any) command with this cluster's `SLURM_CONF`.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("SLURM_CONF", &self.conf).stdin(Stdio::null());
        c
    }

    /// Runs `prog args`; its stdout (stderr appended), whether it succeeded or not.
    pub fn output(&self, prog: &str, args: &[&str]) -> String {
        match self.command(prog).args(args).output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("{prog}: {e}"),
        }
    }

    /// Every record of `scontrol -o show job ID` (one per array element once they are split).
    pub fn jobs(&self, id: &str) -> Vec<Job> {
        let o = self
            .command("scontrol")
            .args(["-o", "show", "job", id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("JobId="))
            .map(|l| {
                Job(l
                    .split_whitespace()
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect())
            })
            .collect()
    }

    /// Polls until job `id` (every element of an array) has finished; returns its records.
    pub fn wait_finished(&self, id: &str, secs: u64) -> Vec<Job> {
        let mut last = Vec::new();
        poll(
            secs,
            &format!("slurm job {id} not finished"),
            || {
                last = self.jobs(id);
                !last.is_empty() && last.iter().all(Job::finished)
            },
            || format!("{:#?}\n{}", self.jobs(id), self.logs()),
        );
        last
    }

    /// The tails of the daemons' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(self.dir.join("log"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&format!("== {}\n", e.path().display()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }

    /// Processes (other than the daemons themselves) running with this cluster's configuration
    /// in their environment: slurmstepd and every job's processes.
    pub fn job_processes(&self) -> Vec<Proc> {
        let mine = format!("SLURM_CONF={}", self.conf.display());
        let daemons: Vec<i32> = self.daemons.iter().map(|(_, c)| c.id() as i32).collect();
        processes()
            .into_iter()
            .filter(|p| !daemons.contains(&p.pid) && p.pid != std::process::id() as i32)
            .filter(|p| p.environ.contains(&mine))
            // slurmctld's own helper.
            .filter(|p| {
                p.cmdline
                    .first()
                    .is_none_or(|c| !c.contains("slurmscriptd"))
            })
            .collect()
    }
}

/// The cluster's `slurm.conf`: node `i` listens on `ports[i + 1]`, the controller on `ports[0]`;
/// no accounting, no cgroups (proctrack/linuxproc, task/none), auth through the private munged.
fn slurm_conf(dir: &Path, sock: &Path, ports: &[u16], nodes: &[String], cpus: u32) -> String {
    let d = dir.display();
    let mut c = format!(
        "ClusterName=abrtest\n\
         SlurmctldHost=localhost(127.0.0.1)\n\
         SlurmctldPort={ctld}\n\
         AuthType=auth/munge\n\
         AuthInfo=socket={sock}\n\
         CredType=cred/munge\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         SelectType=select/cons_tres\n\
         SelectTypeParameters=CR_Core\n\
         ReturnToService=2\n\
         MinJobAge=3600\n\
         KillWait=5\n\
         StateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool/%n\n\
         SlurmctldLogFile={d}/log/slurmctld.log\n\
         SlurmdLogFile={d}/log/slurmd-%n.log\n\
         SlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd-%n.pid\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         JobAcctGatherType=jobacct_gather/none\n\
         AccountingStorageType=accounting_storage/none\n\
         MpiDefault=none\n",
        ctld = ports[0],
        sock = sock.display(),
    );
    for (i, n) in nodes.iter().enumerate() {
        c.push_str(&format!(
            "NodeName={n} NodeHostname=localhost NodeAddr=127.0.0.1 Port={} CPUs={cpus} \
             RealMemory=2000 State=UNKNOWN\n",
            ports[i + 1]
        ));
    }
    c.push_str(&format!(
        "PartitionName=work Nodes={} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES\n",
        nodes.join(",")
    ));
    c
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Cancel every job, give Slurm a moment to end them, then kill what is left of them.
        let user = self.output("id", &["-un"]);
        let _ = self
            .command("scancel")
            .args(["--full", "--user", user.trim()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && !self.job_processes().is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for p in self.job_processes() {
            unsafe {
                libc::kill(p.pid, libc::SIGKILL);
            }
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "slurm test cluster kept for its logs: {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
