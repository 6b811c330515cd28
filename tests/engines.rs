//! abr's tasks on existing engines: a real Slurm cluster (array + afterok assemble, a shard
//! killed mid-way), the Kubernetes manifests (rendered, parsed, their commands run as the
//! kubelet would) and the environment contract of `abr shard --index-from-env`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::shard::{abr_cmd, assert_same_package, one_error_line, plan, task_entries, work_area};
use common::slurm::Slurm;

/// The test cluster itself: an array job runs every index once, each with its own
/// SLURM_ARRAY_TASK_ID, and an afterok job waits for all of them.
#[test]
fn slurm_test_cluster_runs_an_array_and_its_dependency() {
    let slurm = Slurm::start(3, 2);
    let work = tempfile::tempdir().unwrap();
    let script = work.path().join("task.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"$SLURM_ARRAY_TASK_ID $SLURMD_NODENAME\" > \"$1/out-$SLURM_ARRAY_TASK_ID\"\n",
    )
    .unwrap();
    let sbatch = |args: &[&str]| {
        let o = slurm.command("sbatch").args(args).output().unwrap();
        assert!(o.status.success(), "sbatch {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    let dir = work.path().to_str().unwrap();
    let array = sbatch(&[
        "--parsable",
        "--array=0-5",
        "-c1",
        "-o",
        "/dev/null",
        script.to_str().unwrap(),
        dir,
    ]);
    let after = sbatch(&[
        "--parsable",
        &format!("--dependency=afterok:{array}"),
        "-o",
        &format!("{dir}/after.out"),
        "--wrap",
        &format!("ls {dir} | grep -c '^out-'"),
    ]);
    let elements = slurm.wait_finished(&array, 60);
    assert_eq!(elements.len(), 6, "{elements:#?}");
    assert!(
        elements.iter().all(|j| j.state() == "COMPLETED"),
        "{elements:#?}"
    );
    let done = slurm.wait_finished(&after, 60);
    assert_eq!(done[0].state(), "COMPLETED", "{done:#?}");
    // The dependent job ran after all six: it saw six outputs.
    assert_eq!(
        std::fs::read_to_string(work.path().join("after.out"))
            .unwrap()
            .trim(),
        "6"
    );
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..6 {
        let line = std::fs::read_to_string(work.path().join(format!("out-{i}"))).unwrap();
        let (idx, node) = line.trim().split_once(' ').unwrap();
        assert_eq!(idx, i.to_string());
        nodes.insert(node.to_string());
    }
    assert!(nodes.len() > 1, "every element ran on one node: {nodes:?}");
}

/// `abr args` with exactly the index variables `env` (those of the test's own environment are
/// removed: the test itself may run inside an engine).
fn abr_with_index_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    abr_cmd(args).envs(env.iter().copied()).output().unwrap()
}

/// Indices of the finished tasks in `out`'s work area (`tasks/NNNNN/`, temporaries excluded).
fn finished_tasks(out: &Path) -> Vec<usize> {
    task_entries(&work_area(out))
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// The options of a small, fast job: the test ladder, `segment`-second segments, shards of
/// `shard` seconds.
fn fast_options(ladder: &Path, segment: u32, shard: u32) -> Vec<String> {
    let l = ladder.to_str().unwrap();
    [l, &segment.to_string(), &shard.to_string()]
        .iter()
        .zip(["--ladder", "--segment-duration", "--shard-seconds"])
        .flat_map(|(v, k)| [k.to_string(), v.to_string()])
        .collect()
}

/// Borrowed views of `v`.
fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `--index-from-env` runs the task named by the first set of JOB_COMPLETION_INDEX,
/// SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX, and only that task; none set, or an index
/// out of range, is one error line.
#[test]
fn index_from_env_runs_the_task_of_the_first_set_variable() {
    let work = tempfile::tempdir().unwrap();
    let src = common::fixture("1080p30", 4);
    let ladder = common::test_ladder(work.path());
    let out = work.path().join("pkg");
    let n = plan(&src, &out, &strs(&fast_options(&ladder, 1, 1))).tasks;
    assert!(n >= 4, "want at least 4 tasks, plan has {n}");
    let dir = out.to_str().unwrap();
    let shard = |env: &[(&str, &str)]| {
        abr_with_index_env(
            &["shard", dir, "--index-from-env", "--progress", "none"],
            env,
        )
    };
    let cases: [(&[(&str, &str)], usize); 3] = [
        (
            &[
                ("JOB_COMPLETION_INDEX", "1"),
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("AWS_BATCH_JOB_ARRAY_INDEX", "3"),
            ],
            1,
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("AWS_BATCH_JOB_ARRAY_INDEX", "3"),
            ],
            2,
        ),
        (&[("AWS_BATCH_JOB_ARRAY_INDEX", "3")], 3),
    ];
    let mut expect = Vec::new();
    for (env, index) in cases {
        let o = shard(env);
        assert!(o.status.success(), "abr shard with {env:?}: {o:?}");
        expect.push(index);
        assert_eq!(finished_tasks(&out), expect, "after abr shard with {env:?}");
    }
    one_error_line(&shard(&[]), "no index variable set");
    let past = n.to_string();
    one_error_line(
        &shard(&[("JOB_COMPLETION_INDEX", &past)]),
        "index past the last task",
    );
    assert_eq!(
        finished_tasks(&out),
        expect,
        "a refused task wrote something"
    );
    assert!(!out.exists(), "abr shard published the package");
}

/// `scripts/engines/k8s/render.sh KIND KEY=VALUE…`, parsed (one YAML document).
fn render(kind: &str, kv: &[String]) -> serde_json::Value {
    let o = Command::new("bash")
        .arg(common::root().join("scripts/engines/k8s/render.sh"))
        .arg(kind)
        .args(kv)
        .output()
        .unwrap();
    assert!(o.status.success(), "render.sh {kind} {kv:?}: {o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("render.sh {kind}: {e}\n{text}"))
}

/// The string array at `v`.
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Checks what every Job of ours must have and returns its container's command.
fn job_command(job: &serde_json::Value, image: &str, mount: &str, pvc: &str) -> Vec<String> {
    assert_eq!(job["apiVersion"], "batch/v1", "{job:#}");
    assert_eq!(job["kind"], "Job", "{job:#}");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never", "{job:#}");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{job:#}");
    let c = &containers[0];
    assert_eq!(c["image"], image);
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert_eq!(mounts.len(), 1, "{job:#}");
    assert_eq!(mounts[0]["mountPath"], mount);
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1, "{job:#}");
    assert_eq!(volumes[0]["name"], mounts[0]["name"]);
    assert_eq!(volumes[0]["persistentVolumeClaim"]["claimName"], pvc);
    let cmd = strings(&c["command"]);
    assert_eq!(cmd[0], "abr", "{cmd:?}");
    cmd
}

/// Runs a container command as the kubelet would, with the built abr for the image's `abr`.
fn run_container(cmd: &[String], env: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
    abr_with_index_env(&args, env)
}

/// The Kubernetes manifests: rendered by render.sh, parsed as YAML, with the fields the
/// contract needs (RWX claim at one path in every pod, Indexed Job of N completions with
/// backoffLimitPerIndex and restartPolicy Never); then each container's command runs as
/// written, one pod per index with JOB_COMPLETION_INDEX, and the package equals
/// `abr package`'s byte for byte.
#[test]
fn k8s_manifests_parse_and_their_commands_package_the_source() {
    let volume = tempfile::tempdir().unwrap();
    let mount = volume.path().to_str().unwrap().to_string();
    std::fs::create_dir_all(volume.path().join("in")).unwrap();
    let src = volume.path().join("in/source.mp4");
    std::fs::copy(common::fixture("1080p30", 4), &src).unwrap();
    let ladder = common::test_ladder(volume.path());
    let out = volume.path().join("packages/movie");
    let (image, pvc) = ("registry.example/abr:test", "abr-media-test");
    let kv = |pairs: &[(&str, &str)]| -> Vec<String> {
        let base = [
            ("NAME", "movie"),
            ("IMAGE", image),
            ("MOUNT", mount.as_str()),
            ("PVC", pvc),
            ("OUT", out.to_str().unwrap()),
        ];
        base.iter()
            .chain(pairs)
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    };

    let claim = render("pvc", &kv(&[("STORAGE_CLASS", "nfs-client")]));
    assert_eq!(claim["apiVersion"], "v1");
    assert_eq!(claim["kind"], "PersistentVolumeClaim");
    assert_eq!(claim["metadata"]["name"], pvc);
    assert_eq!(strings(&claim["spec"]["accessModes"]), ["ReadWriteMany"]);
    assert_eq!(claim["spec"]["storageClassName"], "nfs-client");

    let plan_args = fast_options(&ladder, 1, 1)[..4].join(" ");
    let plan_job = render(
        "plan",
        &kv(&[
            ("SRC", src.to_str().unwrap()),
            ("SHARD_SECONDS", "1"),
            ("PLAN_ARGS", &plan_args),
        ]),
    );
    assert_eq!(plan_job["metadata"]["name"], "abr-plan-movie");
    let cmd = job_command(&plan_job, image, &mount, pvc);
    let o = run_container(&cmd, &[]);
    assert!(o.status.success(), "plan pod {cmd:?}: {o:?}");
    let stdout = String::from_utf8(o.stdout).unwrap();
    let n: usize = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("tasks: "))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no 'tasks: N' last line: {stdout}"));
    assert!(n >= 4, "{n} tasks");

    let tasks = n.to_string();
    let shards = render("shards", &kv(&[("TASKS", &tasks), ("PARALLELISM", "3")]));
    assert_eq!(shards["metadata"]["name"], "abr-shards-movie");
    let spec = &shards["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"].as_u64(), Some(n as u64));
    assert_eq!(spec["parallelism"].as_u64(), Some(3));
    assert!(spec["backoffLimitPerIndex"].as_u64() >= Some(1), "{spec:#}");
    let cmd = job_command(&shards, image, &mount, pvc);
    assert!(cmd.contains(&"--index-from-env".to_string()), "{cmd:?}");
    // One pod per index, in reverse: the order does not matter.
    for i in (0..n).rev() {
        let o = run_container(&cmd, &[("JOB_COMPLETION_INDEX", &i.to_string())]);
        assert!(o.status.success(), "shard pod {i}: {o:?}");
    }
    assert_eq!(finished_tasks(&out), (0..n).collect::<Vec<_>>());

    let assemble = render("assemble", &kv(&[]));
    assert_eq!(assemble["metadata"]["name"], "abr-assemble-movie");
    let cmd = job_command(&assemble, image, &mount, pvc);
    let o = run_container(&cmd, &[]);
    assert!(o.status.success(), "assemble pod {cmd:?}: {o:?}");
    assert!(out.join("hls/master.m3u8").is_file() && out.join("dash/manifest.mpd").is_file());
    assert!(!work_area(&out).exists(), "work area left after assemble");

    let reference = volume.path().join("reference");
    common::package(&src, &reference, &strs(&fast_options(&ladder, 1, 1)));
    assert_same_package(&out, &reference, "Kubernetes pods vs abr package");

    // render.sh refuses what cannot work.
    for (kind, bad) in [
        ("shards", vec![("TASKS", "0")]),
        ("shards", vec![("TASKS", "3"), ("NAME", "Not_A_Label")]),
        ("assemble", vec![("OUT", "/elsewhere/movie")]),
    ] {
        let o = Command::new("bash")
            .arg(common::root().join("scripts/engines/k8s/render.sh"))
            .arg(kind)
            .args(kv(&bad))
            .output()
            .unwrap();
        assert!(!o.status.success(), "render.sh {kind} accepted {bad:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("render.sh: "));
    }
}

/// What `submit.sh` printed: `tasks=N`, `array_job=ID`, `assemble_job=ID`.
fn submitted(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("submit.sh printed no {key}=: {stdout}"))
        .to_string()
}

/// The largest `percent` of the `--progress json` lines in `log` (0 when none).
fn progress_percent(log: &str) -> f64 {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "progress")
        .filter_map(|e| e["percent"].as_f64())
        .fold(0.0, f64::max)
}

/// Issue 11, acceptance 5: `scripts/engines/slurm/submit.sh` on a real Slurm cluster (three
/// slurmd): the array and its afterok assemble job succeed although one `abr shard` is SIGKILLed
/// mid-way (the array script runs it again: Slurm itself reruns nothing that exited non-zero),
/// and the package is byte-identical to `abr package --shard-seconds S` with the same options.
#[test]
fn slurm_array_reruns_a_killed_shard_and_matches_abr_package() {
    let work = tempfile::tempdir().unwrap();
    let src = common::fixture("1080p30", 24);
    let ladder = common::test_ladder(work.path());
    let (segment, shard_s) = (2, 6);
    let out = work.path().join("packages/movie");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let logs = work.path().join("packages/.movie.slurm-logs");
    let abr = env!("CARGO_BIN_EXE_abr");
    let slurm = Slurm::start(3, 2);

    let mut submit = slurm.command("bash");
    submit
        .arg(common::root().join("scripts/engines/slurm/submit.sh"))
        .arg(&src)
        .arg(&out)
        .arg(shard_s.to_string())
        .args(["--ladder", ladder.to_str().unwrap()])
        .args(["--segment-duration", &segment.to_string()])
        .env("ABR", abr)
        .env("ABR_SHARD_RETRY_DELAY", "0");
    for v in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        submit.env_remove(v);
    }
    let o = submit.output().unwrap();
    assert!(o.status.success(), "submit.sh: {o:?}");
    let stdout = String::from_utf8(o.stdout).unwrap();
    let tasks: usize = submitted(&stdout, "tasks").parse().unwrap();
    let (array, assemble) = (
        submitted(&stdout, "array_job"),
        submitted(&stdout, "assemble_job"),
    );
    let plan = common::shard::read_plan(&work_area(&out));
    let shards = plan["shards"].as_array().expect("plan.json shards").len();
    assert!(shards >= 4, "{shards} shards: the test wants at least 4");
    assert_eq!(plan["tasks"].as_u64(), Some(tasks as u64));
    let log_of = |i: usize| logs.join(format!("shard-{array}_{i}.out"));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();

    // SIGKILL, mid-way, the `abr shard` of the first video shard seen between 20 and 80 % of
    // its work (its --progress json lines in the element's log), found by its command line and
    // array index.
    let conf = format!("SLURM_CONF={}", slurm.conf.display());
    let mut killed = None;
    common::slurm::poll(
        240,
        "no running abr shard with progress to kill",
        || {
            for i in 0..shards {
                let pct = progress_percent(&read(&log_of(i)));
                if !(20.0..80.0).contains(&pct) || finished_tasks(&out).contains(&i) {
                    continue;
                }
                let proc = common::slurm::processes().into_iter().find(|p| {
                    p.cmdline.first().map(String::as_str) == Some(abr)
                        && p.cmdline.get(1).map(String::as_str) == Some("shard")
                        && p.environ.contains(&conf)
                        && p.env("SLURM_ARRAY_TASK_ID") == Some(&i.to_string())
                });
                if let Some(p) = proc {
                    if unsafe { libc::kill(p.pid, libc::SIGKILL) } == 0 {
                        killed = Some((i, p.pid, pct));
                        return true;
                    }
                }
            }
            false
        },
        || format!("{:#?}\n{}", slurm.jobs(&array), slurm.logs()),
    );
    let (index, pid, pct) = killed.unwrap();
    eprintln!("killed abr shard of task {index} (pid {pid}) at {pct} %");
    assert!(
        !finished_tasks(&out).contains(&index),
        "task {index} was complete when killed"
    );

    let elements = slurm.wait_finished(&array, 300);
    let diag = || format!("{elements:#?}\n{}", read(&log_of(index)));
    assert_eq!(elements.len(), tasks, "{}", diag());
    for e in &elements {
        assert_eq!(
            (e.state(), e.get("ExitCode")),
            ("COMPLETED", "0:0"),
            "{}",
            diag()
        );
    }
    // The killed task ran again inside its own element (no Slurm requeue) and succeeded.
    let element = elements
        .iter()
        .find(|e| e.get("ArrayTaskId") == index.to_string())
        .expect("the killed element");
    assert_eq!(element.get("Restarts"), "0", "{}", diag());
    let log = read(&log_of(index));
    for want in [
        format!("task {index} attempt 1 failed (exit 137)"),
        format!("task {index} attempt 2/"),
        format!("task {index} done"),
    ] {
        assert!(log.contains(&want), "no {want:?} in the log:\n{log}");
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the killed abr shard {pid} still exists"
    );

    let done = slurm.wait_finished(&assemble, 300);
    assert_eq!(
        (done[0].state(), done[0].get("ExitCode")),
        ("COMPLETED", "0:0"),
        "{done:#?}\n{}",
        read(&logs.join(format!("assemble-{assemble}.out")))
    );
    assert!(!work_area(&out).exists(), "work area left after assemble");

    let reference = work.path().join("reference");
    let opts = fast_options(&ladder, segment, shard_s);
    common::package(&src, &reference, &strs(&opts));
    assert_same_package(&out, &reference, "Slurm array vs abr package");
}
