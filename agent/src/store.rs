//! Durable state in redb: jobs (with their plans, observations and
//! verification), twin records, failure events, and the preemptive
//! actions taken on jobs (kept and dropped with their job).
//!
//! An accepted job is committed before the API answers. Writes go through
//! one writer thread that commits whatever has queued up in a single
//! transaction (group commit), so many concurrent submissions share one
//! fsync instead of paying one each. Every value carries a format version
//! byte; a value that does not decode is reported with its table and key
//! and skipped, never a crash, and never silently dropped from the count.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::sync::oneshot;
use twinmesh_common::failures::FailureEvent;
use twinmesh_common::preempt::ActionRecord;
use twinmesh_common::twin::NodeRecord;

use crate::jobs::JobRecord;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const TWIN: TableDefinition<&str, &[u8]> = TableDefinition::new("twin");
const FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("failures");
/// Preemptive actions, keyed `job/seq` (kept and dropped with their job).
const ACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions");
/// Services, by name (`node::services::ServiceRecord`).
const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;

/// redb's page cache. Its default (1 GiB) lets the cache grow with every
/// page ever touched; the agent's working set is small, and it must stay
/// small on a phone.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error(
        "cannot open database {path}: {reason} (if the file is damaged, move it aside; the agent then starts empty)"
    )]
    Open {
        /// File path.
        path: PathBuf,
        /// What redb said.
        reason: String,
    },
    /// A read or write failed.
    #[error("database {op} failed: {reason}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// What redb said.
        reason: String,
    },
    /// The writer thread is gone (the agent is shutting down).
    #[error("the store is closed")]
    Closed,
}

impl StoreError {
    fn io(op: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
        move |e| StoreError::Io { op, reason: e.to_string() }
    }
}

/// A stored value that did not decode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Corrupt {
    /// Table.
    pub table: &'static str,
    /// Key.
    pub key: String,
    /// Why.
    pub reason: String,
}

enum Write {
    Job(Vec<u8>, String),
    DeleteJob(String),
    Twin(Vec<u8>, String),
    Failure(Vec<u8>, String),
    Action(Vec<u8>, String),
    Service(Vec<u8>, String),
    DeleteService(String),
}

struct Request {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the store; cheap to clone. The last clone dropped stops the
/// writer after it has committed everything queued, and closes the file.
#[derive(Clone)]
pub struct Store {
    /// `None` only while the writer reopens the file after a failed
    /// commit.
    db: Arc<std::sync::RwLock<Option<Database>>>,
    /// Whether the last commit succeeded.
    healthy: Arc<std::sync::atomic::AtomicBool>,
    inner: Arc<Writer>,
    /// The database file.
    path: Arc<Path>,
}

struct Writer {
    tx: Option<std_mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

use twinmesh_common::record::{decode_stored as decode, encode_stored as encode};

impl Store {
    /// Opens (or creates) `dir/twinmesh.redb` and starts the writer.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Open { path: dir.to_path_buf(), reason: e.to_string() })?;
        let path = dir.join("twinmesh.redb");
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
        // Make sure the tables exist so reads never fail on a new file.
        let w = db.begin_write().map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
        for t in [JOBS, TWIN, FAILURES, ACTIONS, SERVICES] {
            w.open_table(t).map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
        }
        w.commit().map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
        let db = Arc::new(std::sync::RwLock::new(Some(db)));
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (tx, rx) = std_mpsc::channel::<Request>();
        let (wdb, wpath, whealthy) = (db.clone(), path.clone(), healthy.clone());
        let thread = std::thread::Builder::new()
            .name("twinmesh-store".into())
            .spawn(move || writer(&wdb, &wpath, &whealthy, &rx))
            .map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
        Ok(Store { db, healthy, inner: Arc::new(Writer { tx: Some(tx), thread: Some(thread) }), path: path.into() })
    }

    /// The database file's size (bytes; 0 if it cannot be read).
    pub fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Whether the last commit succeeded (`/readyz` follows it).
    pub fn healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read<T>(&self, f: impl FnOnce(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let g = self.db.read().unwrap_or_else(|e| e.into_inner());
        f(g.as_ref().ok_or(StoreError::Closed)?)
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(StoreError::Closed)?;
        tx.send(Request { writes, done }).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?.map_err(|reason| StoreError::Io { op: "commit", reason })
    }

    /// Stores a job record; returns once it is durable.
    pub async fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.write(vec![Write::Job(encode(job), job.id.clone())]).await
    }

    /// Deletes job records (retention); returns once durable.
    pub async fn delete_jobs(&self, ids: Vec<String>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(ids.into_iter().map(Write::DeleteJob).collect()).await
    }

    /// Stores a preemptive action (new, or with its outcome); returns once
    /// durable.
    pub async fn put_action(&self, a: &ActionRecord) -> Result<(), StoreError> {
        self.write(vec![Write::Action(encode(a), action_key(&a.job, a.seq))]).await
    }

    /// The actions taken on job `id`, in order.
    pub fn actions_of(&self, id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        self.read(|db| {
            let r = db.begin_read().map_err(|e| StoreError::io("read")(e.into()))?;
            let t = r.open_table(ACTIONS).map_err(|e| StoreError::io("read")(e.into()))?;
            let (lo, hi) = (format!("{id}/"), format!("{id}0"));
            let mut out = Vec::new();
            for e in t.range(lo.as_str()..hi.as_str()).map_err(|e| StoreError::io("read")(e.into()))? {
                let (k, v) = e.map_err(|e| StoreError::io("read")(e.into()))?;
                out.push(decode(v.value()).map_err(|reason| StoreError::Io {
                    op: "read",
                    reason: format!("action '{}': {reason}", k.value()),
                })?);
            }
            Ok(out)
        })
    }

    /// Stores a service's record; returns once durable.
    pub async fn put_service<T: Serialize>(&self, name: &str, record: &T) -> Result<(), StoreError> {
        self.write(vec![Write::Service(encode(record), name.to_string())]).await
    }

    /// Forgets a service; returns once durable.
    pub async fn delete_service(&self, name: &str) -> Result<(), StoreError> {
        self.write(vec![Write::DeleteService(name.to_string())]).await
    }

    /// Every stored service, and the entries that did not decode.
    pub fn services<T: DeserializeOwned>(&self) -> Result<(Vec<T>, Vec<Corrupt>), StoreError> {
        self.load(SERVICES, "services")
    }

    /// Every stored action, and the entries that did not decode.
    pub fn actions(&self) -> Result<(Vec<ActionRecord>, Vec<Corrupt>), StoreError> {
        self.load(ACTIONS, "actions")
    }

    /// Stores twin records and failure events; returns once durable.
    pub async fn put_twin(&self, records: &[NodeRecord], failures: &[FailureEvent]) -> Result<(), StoreError> {
        let mut w: Vec<Write> = records.iter().map(|r| Write::Twin(encode(r), r.node.name.clone())).collect();
        w.extend(failures.iter().map(|f| Write::Failure(encode(f), failure_key(f))));
        if w.is_empty() {
            return Ok(());
        }
        self.write(w).await
    }

    /// One job by id; a stored record that does not decode is an error
    /// naming the job.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.read(|db| {
            let r = db.begin_read().map_err(|e| StoreError::io("read")(e.into()))?;
            let t = r.open_table(JOBS).map_err(|e| StoreError::io("read")(e.into()))?;
            let v = t.get(id).map_err(|e| StoreError::io("read")(e.into()))?;
            v.map(|v| decode(v.value()))
                .transpose()
                .map_err(|reason| StoreError::Io { op: "read", reason: format!("job '{id}': {reason}") })
        })
    }

    /// Every stored job, and the entries that did not decode.
    pub fn jobs(&self) -> Result<(Vec<JobRecord>, Vec<Corrupt>), StoreError> {
        self.load(JOBS, "jobs")
    }

    /// Every stored twin record, and the entries that did not decode.
    pub fn twin(&self) -> Result<(Vec<NodeRecord>, Vec<Corrupt>), StoreError> {
        self.load(TWIN, "twin")
    }

    /// Every stored failure event, and the entries that did not decode.
    pub fn failures(&self) -> Result<(Vec<FailureEvent>, Vec<Corrupt>), StoreError> {
        self.load(FAILURES, "failures")
    }

    fn load<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&str, &[u8]>,
        name: &'static str,
    ) -> Result<(Vec<T>, Vec<Corrupt>), StoreError> {
        self.read(|db| {
            let r = db.begin_read().map_err(|e| StoreError::io("read")(e.into()))?;
            let t = r.open_table(def).map_err(|e| StoreError::io("read")(e.into()))?;
            let mut ok = Vec::new();
            let mut bad = Vec::new();
            for entry in t.iter().map_err(|e| StoreError::io("read")(e.into()))? {
                let (k, v) = entry.map_err(|e| StoreError::io("read")(e.into()))?;
                match decode(v.value()) {
                    Ok(x) => ok.push(x),
                    Err(reason) => bad.push(Corrupt { table: name, key: k.value().to_string(), reason }),
                }
            }
            Ok((ok, bad))
        })
    }

    #[cfg(test)]
    fn put_raw(&self, key: &str, value: &[u8]) {
        let g = self.db.read().unwrap();
        let w = g.as_ref().unwrap().begin_write().unwrap();
        w.open_table(JOBS).unwrap().insert(key, value).unwrap();
        w.commit().unwrap();
    }
}

fn action_key(job: &str, seq: u32) -> String {
    format!("{job}/{seq:06}")
}

fn failure_key(f: &FailureEvent) -> String {
    format!("{}/{:020}", f.id.reporter, f.id.seq)
}

/// The writer thread: block for one request, fold in whatever else is
/// queued, commit once, answer everyone.
fn writer(
    db: &std::sync::RwLock<Option<Database>>,
    path: &Path,
    healthy: &std::sync::atomic::AtomicBool,
    rx: &std_mpsc::Receiver<Request>,
) {
    let attempt = |batch: &[Request]| -> Result<(), String> {
        let g = db.read().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(d) => commit(d, batch).map_err(|e| e.to_string()),
            None => Err("the database is closed after an I/O error".into()),
        }
    };
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // Nothing here logs or may panic through: the thread must outlive
        // any error (its log may be on the very disk that is full).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let first = attempt(&batch);
            if first.is_ok() {
                return first;
            }
            // After an I/O error (a full disk) redb refuses every later
            // transaction until the file is reopened: reopen and try once
            // more, so the store recovers by itself once space is back.
            // Nothing of a failed transaction was written.
            match reopen(db, path) {
                Ok(()) => attempt(&batch),
                Err(e) => Err(format!("{}; reopening the database: {e}", first.unwrap_err())),
            }
        }))
        .unwrap_or_else(|_| Err("the store's writer panicked; the commit was not made".into()));
        healthy.store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        for r in batch {
            let _ = r.done.send(result.clone());
        }
    }
}

fn reopen(db: &std::sync::RwLock<Option<Database>>, path: &Path) -> Result<(), String> {
    let mut g = db.write().unwrap_or_else(|e| e.into_inner());
    // The old handle must be gone before the file is opened again.
    *g = None;
    let d = redb::Builder::new().set_cache_size(CACHE_BYTES).create(path).map_err(|e| e.to_string())?;
    *g = Some(d);
    Ok(())
}

fn commit(db: &Database, batch: &[Request]) -> Result<(), redb::Error> {
    let w = db.begin_write()?;
    {
        let mut jobs = w.open_table(JOBS)?;
        let mut twin = w.open_table(TWIN)?;
        let mut failures = w.open_table(FAILURES)?;
        let mut actions = w.open_table(ACTIONS)?;
        let mut services = w.open_table(SERVICES)?;
        for r in batch {
            for op in &r.writes {
                match op {
                    Write::Job(v, k) => jobs.insert(k.as_str(), v.as_slice())?,
                    Write::DeleteJob(k) => {
                        // A job's actions go with it.
                        let (lo, hi) = (format!("{k}/"), format!("{k}0"));
                        let keys = actions
                            .range(lo.as_str()..hi.as_str())?
                            .map(|e| e.map(|(k, _)| k.value().to_string()))
                            .collect::<Result<Vec<_>, _>>()?;
                        for a in keys {
                            actions.remove(a.as_str())?;
                        }
                        jobs.remove(k.as_str())?
                    }
                    Write::Action(v, k) => actions.insert(k.as_str(), v.as_slice())?,
                    Write::Service(v, k) => services.insert(k.as_str(), v.as_slice())?,
                    Write::DeleteService(k) => services.remove(k.as_str())?,
                    Write::Twin(v, k) => twin.insert(k.as_str(), v.as_slice())?,
                    Write::Failure(v, k) => failures.insert(k.as_str(), v.as_slice())?,
                };
            }
        }
    }
    w.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobRecord, JobState};

    fn job(id: &str) -> JobRecord {
        JobRecord::accepted(id.into(), "{}".into(), "greedy".into(), false, "me".into(), 0)
    }

    // Rule: a job's actions are kept in order with it, survive a reopen,
    // and go when the job is deleted — another job's (whose id starts the
    // same) stay.
    #[tokio::test]
    async fn actions_live_and_die_with_their_job() {
        let dir = tempfile::tempdir().unwrap();
        let act = |job: &str, seq: u32| ActionRecord {
            job: job.into(),
            seq,
            at_ms: u64::from(seq),
            action: "migrate".into(),
            stage: "s".into(),
            from: "a".into(),
            to: "b".into(),
            gain_ms: 1.0,
            cost_ms: 0.5,
            work_core_ms: 0.0,
            risk_before: 0.3,
            risk_after: 0.0,
            reason: "r".into(),
            reaction_ms: None,
            outcome: None,
        };
        {
            let s = Store::open(dir.path()).unwrap();
            for (j, q) in [("j1", 2), ("j1", 1), ("j10", 1), ("j1", 10)] {
                s.put_job(&job(j)).await.unwrap();
                s.put_action(&act(j, q)).await.unwrap();
            }
            let mut done = act("j1", 2);
            done.outcome = Some("on_time".into());
            s.put_action(&done).await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let a = s.actions_of("j1").unwrap();
        assert_eq!(a.iter().map(|a| a.seq).collect::<Vec<_>>(), [1, 2, 10]);
        assert_eq!(a[1].outcome.as_deref(), Some("on_time"));
        s.delete_jobs(vec!["j1".into()]).await.unwrap();
        assert!(s.actions_of("j1").unwrap().is_empty());
        assert_eq!(s.actions_of("j10").unwrap().len(), 1);
        assert_eq!(s.actions().unwrap().0.len(), 1);
    }

    #[tokio::test]
    async fn jobs_survive_reopen_and_corrupt_entries_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let mut handles = Vec::new();
            for i in 0..200 {
                let s = s.clone();
                handles.push(tokio::spawn(async move { s.put_job(&job(&format!("j{i:03}"))).await }));
            }
            for h in handles {
                h.await.unwrap().unwrap();
            }
            let mut j = job("j007");
            j.state = JobState::Succeeded;
            s.put_job(&j).await.unwrap();
            s.put_raw("broken", &[1, 255, 255, 255]);
            s.put_raw("future", &[9, 0]);
        }
        let s = Store::open(dir.path()).unwrap();
        let (jobs, bad) = s.jobs().unwrap();
        assert_eq!(jobs.len(), 200);
        assert_eq!(s.job("j007").unwrap().unwrap().state, JobState::Succeeded);
        let keys: Vec<&str> = bad.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["broken", "future"]);
        assert!(bad[1].reason.contains("unknown value version 9"));
    }

    #[tokio::test]
    async fn a_full_record_round_trips() {
        // Everything a finished job carries must survive postcard.
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let f = twinmesh_common::fabric::reference();
        let jd = twinmesh_common::spec::parse_job(include_str!("../../docs/examples/video-pipeline.yaml")).unwrap();
        let plan = twinmesh_common::policy::Policy::Cvar
            .plan(&f.view(), &jd, &twinmesh_common::policy::PolicyConfig::default())
            .unwrap();
        let mut j = job("full");
        j.plan = Some(plan.clone());
        j.route = Some(twinmesh_common::routing::Route {
            agent: "a".into(),
            reason: twinmesh_common::routing::RouteReason::Nearest { latency_ms: 15.0 },
            skipped: vec!["b".into()],
        });
        j.verification = Some(twinmesh_common::verify::verify(
            &plan.predicted,
            &twinmesh_common::verify::Observed { latency_ms: 1.0, energy_j: 2.0 },
            &Default::default(),
        ));
        j.observations.push(crate::jobs::StageObservation {
            stage: "decode".into(),
            node: "n".into(),
            format: twinmesh_common::model::Format::QemuArm64,
            start_ms: 1.0,
            finish_ms: 2.0,
            compute_ms: 1.0,
            model_ms: 1.0,
            energy_j: 1.0,
            attempts: 1,
        });
        j.error = Some("x".into());
        s.put_job(&j).await.unwrap();
        let (jobs, bad) = s.jobs().unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(jobs, vec![j]);
    }

    #[test]
    fn a_garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("twinmesh.redb"), b"this is not a database, just forty bytes.").unwrap();
        let e = Store::open(dir.path()).err().expect("must not open");
        let msg = e.to_string();
        assert!(msg.contains("twinmesh.redb") && msg.contains("move it aside"), "{msg}");
    }
}
