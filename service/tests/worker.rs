//! `service::worker` in-process (`spawn_pool`, as `abr serve --ingest` runs it) on a SQLite
//! queue: payloads no retry can fix fail their job at the first attempt, the pool's worker ids
//! are `host:pid:n`, and an idle pool stops at once. Packaging itself is tested end to end
//! through `abr worker` (`tests/worker.rs` of the binary).

use std::sync::Arc;
use std::time::{Duration, Instant};

use service::jobs::{new_job, VideoJob};
use service::queue::{JobState, NewJob, NewTask, Queue, Settings, SqliteQueue, SystemClock};
use service::worker::{spawn_pool, Settings as WorkerSettings};

fn queue(dir: &tempfile::TempDir) -> Arc<SqliteQueue> {
    Arc::new(
        SqliteQueue::open(
            &dir.path().join("queue.sqlite3"),
            Settings::default(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    )
}

fn wait_final(q: &dyn Queue, id: &str) -> service::queue::JobInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = q.job(id).unwrap().unwrap();
        if j.state.is_final() {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {j:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_payloads_and_missing_sources_fail_at_once_and_the_pool_stops() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir);
    // Not a video job.
    q.enqueue(&NewJob {
        id: "not-a-video".into(),
        payload: "{\"hello\":1}".into(),
        tasks: vec![NewTask {
            stage: 0,
            payload: "{\"kind\":\"plan\"}".into(),
        }],
    })
    .unwrap();
    // A video job with a task of another stage's kind.
    let v = VideoJob {
        video: "wrong-stage".into(),
        principal: "p".into(),
        name: "n".into(),
        source: dir.path().join("src.mp4"),
        out: dir.path().join("out"),
    };
    let mut j = new_job(&v);
    j.tasks[0].payload = "{\"kind\":\"assemble\"}".into();
    q.enqueue(&j).unwrap();
    // A source that does not exist: the packager's input error.
    let missing = dir.path().join("missing.mp4");
    q.enqueue(&new_job(&VideoJob {
        video: "missing".into(),
        source: missing.clone(),
        out: dir.path().join("missing-out"),
        ..v.clone()
    }))
    .unwrap();
    let pool = spawn_pool(q.clone(), 2, WorkerSettings::default()).unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(pool.ids().len(), 2);
    for id in pool.ids() {
        let parts: Vec<&str> = id.split(':').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[1], pid, "{id}");
    }
    for (id, needle) in [
        ("not-a-video", "not a video job"),
        ("wrong-stage", "belongs to stage 2"),
        ("missing", "missing.mp4"),
    ] {
        let job = wait_final(q.as_ref(), id);
        assert_eq!(job.state, JobState::Failed, "{job:#?}");
        let reason = job.reason.clone().unwrap();
        assert!(
            reason.contains(needle) && reason.contains("permanently"),
            "{id}: {reason}"
        );
        assert_eq!(job.tasks[0].attempt, 1, "{job:#?}");
    }
    assert!(!dir.path().join("missing-out").exists());
    let t0 = Instant::now();
    pool.stop();
    pool.join();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
