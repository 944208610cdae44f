//! A scripted scenario: a few named agents on the reference fabric, and
//! steps — submit a job to an agent, pause an agent (as SIGSTOP does: it
//! handles nothing, what is sent to it waits), resume it, cut agents off
//! the rest, heal, wait — run one after the other. The job protocol's
//! decisions (`common::lifecycle::Decision`) are listed as they are made,
//! so the same script run by real agents (tests/tests/scenario.rs) can be
//! compared with the simulator's run decision by decision.
//!
//! `twinmesh-sims scenario FILE` prints them.

use serde::Deserialize;
use twinmesh_common::lifecycle::Decision;

use super::{Args, Ev, Mesh, Partition};

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The agents. Those a `cut` step cuts off come first.
    pub agents: Vec<ScenarioAgent>,
    /// The agents' failover grace (s).
    pub failover_grace_s: f64,
    /// When the first step starts (s): the mesh has settled by then.
    pub start_s: f64,
    /// How long the run goes on after the last step (s).
    pub settle_s: f64,
    /// The steps, one after the other.
    pub steps: Vec<Step>,
}

/// One agent of a scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioAgent {
    /// Its name: the node it runs on, if the fabric has one by that name.
    pub name: String,
    /// Its cluster.
    pub cluster: String,
    /// It also owns the other nodes of its cluster (`--own-cluster`).
    #[serde(default)]
    pub own_cluster: bool,
}

/// One step. A step starts when the one before it is over.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Wait this long (s).
    WaitS(f64),
    /// Stop an agent (it handles nothing until resumed).
    Pause(String),
    /// Resume a paused agent.
    Resume(String),
    /// Submit a job document to an agent; over when the submission is
    /// answered (forwarded and planned, or planned there).
    Submit {
        /// The agent.
        to: String,
        /// The job document.
        job: serde_json::Value,
    },
    /// Cut these agents (the first ones of the list) off the others.
    Cut(Vec<String>),
    /// End the cut.
    Heal,
}

/// Arguments of `twinmesh-sims scenario`.
#[derive(Clone, Debug, clap::Args)]
pub struct ScenarioArgs {
    /// The scenario (JSON; tests/fixtures/scenario.json is one).
    pub file: std::path::PathBuf,
    /// How the decisions are printed.
    #[arg(long, value_enum, default_value_t = super::Output_::Text)]
    pub output: super::Output_,
}

/// `twinmesh-sims scenario`: runs it and prints the decisions.
pub fn run(a: ScenarioArgs) -> anyhow::Result<()> {
    let s = Scenario::read(&a.file)?;
    let decisions = Mesh::scenario(&s)?.run_scenario();
    match a.output {
        super::Output_::Json => {
            let rows: Vec<serde_json::Value> = decisions
                .iter()
                .map(|(at, agent, d)| {
                    let mut v = serde_json::to_value(d).expect("decisions serialise");
                    v["agent"] = agent.clone().into();
                    v["at_ms"] = (at.round()).into();
                    v
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
        super::Output_::Text => {
            for (at, agent, d) in &decisions {
                let v = serde_json::to_value(d).expect("decisions serialise");
                println!("{:>9.3} s  {agent:<14} {v}", at / 1000.0);
            }
        }
    }
    Ok(())
}

/// The scripted run's state inside the mesh.
pub(super) struct Script {
    steps: Vec<Step>,
    next: usize,
    /// The submission a step waits on (job index).
    pub(super) waiting_on: Option<usize>,
    pub(super) paused: Vec<bool>,
    /// Events for paused agents, in the order they came.
    held: Vec<Vec<Ev>>,
    settle_ms: f64,
    /// When the run ends (once the last step is over).
    pub(super) end: Option<f64>,
    /// The decisions made: (when, agent, decision).
    pub(super) decisions: Vec<(f64, String, Decision)>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let s: Scenario = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(s)
    }
}

impl Mesh {
    /// A mesh of the scenario's agents on the reference fabric, each
    /// owning its node and, with `own_cluster`, its cluster's other nodes.
    pub fn scenario(s: &Scenario) -> anyhow::Result<Self> {
        let fab = twinmesh_common::fabric::reference();
        let names: Vec<String> = s.agents.iter().map(|a| a.name.clone()).collect();
        for (i, a) in s.agents.iter().enumerate() {
            if fab.latency.index_of(&a.cluster).is_none() {
                anyhow::bail!("agents[{i}].cluster: unknown cluster '{}'", a.cluster);
            }
            if names[..i].contains(&a.name) {
                anyhow::bail!("agents[{i}].name: '{}' twice", a.name);
            }
        }
        let owner = |n: &twinmesh_common::model::Node| {
            s.agents
                .iter()
                .find(|a| a.name == n.name)
                .or_else(|| s.agents.iter().find(|a| a.own_cluster && a.cluster == n.cluster))
                .map(|a| a.name.clone())
        };
        let owned: Vec<(twinmesh_common::model::Node, Option<String>)> =
            fab.nodes.iter().map(|n| (n.clone(), owner(n))).collect();
        let clusters: Vec<String> = s.agents.iter().map(|a| a.cluster.clone()).collect();
        let args = Args {
            agents: names.len(),
            nodes: None,
            seconds: f64::INFINITY,
            loss: 0.0,
            partition: None,
            degree: names.len(),
            updates_per_s: 0.0,
            jobs_per_s: 0.0,
            settle: 0.0,
            job_scale: 1.0,
            failover_grace: s.failover_grace_s,
            seed: 1,
            output: super::Output_::Json,
        };
        let rng = rand::SeedableRng::seed_from_u64(1);
        let mut mesh = Mesh::build(args, fab, &names, &clusters, owned, names.len(), rng)?;
        for (i, step) in s.steps.iter().enumerate() {
            let known = |a: &String| names.contains(a);
            let bad = match step {
                Step::Pause(a) | Step::Resume(a) | Step::Submit { to: a, .. } => (!known(a)).then(|| a.clone()),
                Step::Cut(side) => side.iter().find(|a| !known(a)).cloned(),
                Step::WaitS(_) | Step::Heal => None,
            };
            if let Some(a) = bad {
                anyhow::bail!("steps[{i}]: unknown agent '{a}'");
            }
            if let Step::Cut(side) = step
                && side.iter().enumerate().any(|(k, a)| names[k] != *a)
            {
                anyhow::bail!("steps[{i}].cut: the agents cut off must be the first of `agents`, in order");
            }
        }
        // Every agent a mesh peer of every other (as a few agents are).
        let n = names.len() as u32;
        mesh.neighbours = (0..n).map(|i| (0..n).filter(|&j| j != i).collect()).collect();
        mesh.script = Some(Script {
            steps: s.steps.clone(),
            next: 0,
            waiting_on: None,
            paused: vec![false; names.len()],
            held: vec![Vec::new(); names.len()],
            settle_ms: s.settle_s * 1000.0,
            end: None,
            decisions: Vec::new(),
        });
        mesh.queue.push(s.start_s * 1000.0, Ev::Step);
        Ok(mesh)
    }

    /// Runs the scenario to its end; the decisions made, in order.
    pub fn run_scenario(mut self) -> Vec<(f64, String, Decision)> {
        while let Some((now, ev)) = self.queue.pop() {
            if self.script.as_ref().and_then(|s| s.end).is_some_and(|end| now > end) {
                break;
            }
            self.events += 1;
            self.handle(now, ev);
        }
        self.script.map(|s| s.decisions).unwrap_or_default()
    }

    /// Records a decision of agent `i` (scripted runs only).
    pub(super) fn decide(&mut self, i: usize, now: f64, d: Decision) {
        if let Some(s) = self.script.as_mut() {
            s.decisions.push((now, self.names[i].clone(), d));
        }
    }

    /// Whether agent `i` is paused (scripted runs only).
    pub(super) fn paused(&self, i: usize) -> bool {
        self.script.as_ref().is_some_and(|s| s.paused[i])
    }

    /// Holds `ev` for its paused agent, if it has one: `true` if held.
    pub(super) fn hold_if_paused(&mut self, ev: Ev) -> bool {
        let Some(i) = self.actor(&ev) else { return false };
        let Some(s) = self.script.as_mut() else { return false };
        if !s.paused[i] {
            return false;
        }
        // A paused agent's own loop does not tick; it ticks again on resume.
        if !matches!(ev, Ev::Tick(_)) {
            s.held[i].push(ev);
        }
        true
    }

    /// The next step, at `now`.
    pub(super) fn step(&mut self, now: f64) {
        let Some(s) = self.script.as_mut() else { return };
        let Some(step) = s.steps.get(s.next).cloned() else {
            s.end = Some(now + s.settle_ms);
            return;
        };
        s.next += 1;
        let index = |a: &str| self.index[a] as usize;
        match step {
            Step::WaitS(secs) => return self.queue.push(now + secs * 1000.0, Ev::Step),
            Step::Pause(a) => {
                let i = index(&a);
                self.script.as_mut().expect("scripted").paused[i] = true;
            }
            Step::Resume(a) => {
                let i = index(&a);
                let s = self.script.as_mut().expect("scripted");
                s.paused[i] = false;
                // What waited is handled now, in the order it came.
                for ev in std::mem::take(&mut s.held[i]) {
                    self.queue.push(now, ev);
                }
                self.queue.push(now, Ev::Tick(i as u32));
            }
            Step::Submit { to, job } => {
                let k = self.submit_scripted(index(&to), &job.to_string(), now);
                let s = self.script.as_mut().expect("scripted");
                if self.jobs[k].forwarding.as_ref().is_some_and(|f| !f.is_done()) {
                    s.waiting_on = Some(k);
                    return;
                }
            }
            Step::Cut(side) => {
                self.partition = Some(Partition { cut: side.len(), from: now, to: f64::INFINITY });
            }
            Step::Heal => {
                if let Some(p) = self.partition.as_mut() {
                    p.to = now;
                }
            }
        }
        self.queue.push(now, Ev::Step);
    }

    /// A submission a step waits on was answered.
    pub(super) fn submission_answered(&mut self, k: usize, now: f64) {
        if let Some(s) = self.script.as_mut()
            && s.waiting_on == Some(k)
        {
            s.waiting_on = None;
            self.queue.push(now, Ev::Step);
        }
    }
}

#[cfg(test)]
mod tests;
