//! Job records as the agent keeps them: every change durable before it is
//! visible, and what is kept of finished jobs bounded (retention).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::warn;

use super::{Agent, lock, now_ms};
use crate::jobs::JobRecord;

/// What is kept of finished jobs (memory and disk stay bounded under
/// sustained load; calibration keeps what it learned from them).
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Finished jobs kept at most (the oldest go first).
    pub max_finished: usize,
    /// Finished jobs are forgotten this long after they were accepted.
    pub max_age: Duration,
    /// Jobs accepted and not yet finished at most; beyond, submissions get
    /// 503 (retry later) instead of growing a backlog without bound.
    pub max_in_flight: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_finished: 2_000, max_age: Duration::from_secs(24 * 3600), max_in_flight: 2_000 }
    }
}

impl Agent {
    /// Updates a job record: durable first, then visible. A commit that
    /// fails (a full disk) is retried with backoff until it succeeds, so
    /// no state a client has seen is ever lost and a finished job is never
    /// run again after a restart.
    pub async fn update_job(&self, id: &str, f: impl FnOnce(&mut JobRecord)) -> Option<JobRecord> {
        // One update of a job at a time (a job's pods report concurrently),
        // so none is lost between the copy and the commit.
        let turn = {
            let mut locks = lock(&self.job_locks);
            locks.entry(id.to_string()).or_default().clone()
        };
        let _turn = turn.lock().await;
        let mut rec = self.job(id)?;
        f(&mut rec);
        let mut wait = Duration::from_millis(50);
        while let Err(e) = self.store.put_job(&rec).await {
            warn!(job = id, error = %e, retry_in_ms = wait.as_millis() as u64, "storing a job update; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
        // Whatever changed meanwhile in memory is older than this update
        // (one task drives a job).
        // A finished job leaves memory: the store holds it.
        {
            let mut st = self.lock();
            if rec.state.is_final() {
                st.jobs.remove(id);
                if st.finished_ids.insert(id.to_string()) {
                    st.finished.push_back((rec.accepted_at_ms, id.to_string()));
                }
            } else {
                st.jobs.insert(id.to_string(), rec.clone());
            }
        }
        if rec.state.is_final() {
            lock(&self.job_locks).remove(id);
            self.enforce_retention().await;
        }
        Some(rec)
    }

    /// Forgets the oldest finished jobs beyond the retention's count or
    /// age, in memory and on disk. Cheap when nothing is due (it looks at
    /// the oldest only).
    pub async fn enforce_retention(&self) {
        let r = self.cfg.retention;
        let oldest_kept = now_ms().saturating_sub(r.max_age.as_millis() as u64);
        let gone: Vec<String> = {
            let mut st = self.lock();
            let mut gone = Vec::new();
            while let Some((at, _)) = st.finished.front() {
                if st.finished.len() <= r.max_finished && *at >= oldest_kept {
                    break;
                }
                let (_, id) = st.finished.pop_front().expect("front");
                if st.finished_ids.remove(&id) {
                    gone.push(id);
                }
            }
            gone
        };
        if gone.is_empty() {
            return;
        }
        self.metrics.jobs_evicted.fetch_add(gone.len() as u64, Ordering::Relaxed);
        if let Err(e) = self.store.delete_jobs(gone).await {
            // Kept on disk until the next restart's pass; never a lost job.
            warn!(error = %e, "deleting expired job records");
        }
    }

    /// Jobs held: unfinished ones (in memory and on disk) and finished
    /// ones (on disk).
    pub fn jobs_held(&self) -> usize {
        let st = self.lock();
        st.jobs.len() + st.finished_ids.len()
    }

    /// A job by id: an unfinished one from memory, a finished one from the
    /// store.
    pub fn job(&self, id: &str) -> Option<JobRecord> {
        {
            let st = self.lock();
            if let Some(j) = st.jobs.get(id) {
                return Some(j.clone());
            }
            if !st.finished_ids.contains(id) {
                return None;
            }
        }
        match self.store.job(id) {
            Ok(j) => j,
            Err(e) => {
                warn!(job = id, error = %e, "reading a finished job");
                None
            }
        }
    }
    /// The most recent jobs, newest first: every unfinished one (up to
    /// `limit`), then finished ones from the store.
    pub fn recent_jobs(&self, limit: usize) -> Vec<JobRecord> {
        let (mut out, finished): (Vec<JobRecord>, Vec<String>) = {
            let st = self.lock();
            let mut live: Vec<JobRecord> = st.jobs.values().cloned().collect();
            live.sort_by(|a, b| b.accepted_at_ms.cmp(&a.accepted_at_ms).then_with(|| a.id.cmp(&b.id)));
            live.truncate(limit);
            let more = limit - live.len();
            (live, st.finished.iter().rev().take(more).map(|(_, id)| id.clone()).collect())
        };
        for id in finished {
            match self.store.job(&id) {
                Ok(Some(j)) => out.push(j),
                Ok(None) => {}
                Err(e) => warn!(job = %id, error = %e, "reading a finished job"),
            }
        }
        out
    }

    /// Resumes jobs that were accepted but not finished before a restart.
    pub fn unfinished_jobs(&self) -> Vec<String> {
        self.lock()
            .jobs
            .values()
            .filter(|j| !j.state.is_final() && j.planner == self.cfg.name)
            .map(|j| j.id.clone())
            .collect()
    }
}
