//! `twinmesh submit` and `twinmesh twin`: talk to a running agent.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

/// Where the agent is and how to authenticate.
#[derive(Debug, Args, Clone)]
pub struct AgentUrl {
    /// Agent API base URL.
    #[arg(long, env = "TWINMESH_AGENT", default_value = "http://127.0.0.1:7400")]
    pub agent: String,
    /// File with the API bearer token.
    #[arg(long, env = "TWINMESH_API_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl AgentUrl {
    fn token(&self) -> anyhow::Result<Option<String>> {
        self.token_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .with_context(|| format!("cannot read token {}", p.display()))
            })
            .transpose()
    }

    fn get(&self, c: &reqwest::Client, path: &str) -> anyhow::Result<reqwest::RequestBuilder> {
        let mut r = c.get(format!("{}{path}", self.agent.trim_end_matches('/')));
        if let Some(t) = self.token()? {
            r = r.bearer_auth(t);
        }
        Ok(r)
    }
}

/// Arguments of `twinmesh submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Job document (YAML or JSON); `-` reads standard input.
    pub job: PathBuf,
    #[command(flatten)]
    pub agent: AgentUrl,
    /// Placement policy (the agent's default when absent).
    #[arg(long, short)]
    pub policy: Option<String>,
    /// Plan only.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `twinmesh twin`.
#[derive(Debug, Args)]
pub struct TwinArgs {
    #[command(flatten)]
    pub agent: AgentUrl,
}

async fn answer(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.context("the agent's answer is not JSON")?;
    if !status.is_success() {
        bail!("{status}: {}", body["error"].as_str().unwrap_or("(no message)"));
    }
    Ok(body)
}

pub async fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let text = if a.job.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&a.job).with_context(|| format!("cannot read job file {}", a.job.display()))?
    };
    let c = reqwest::Client::new();
    let mut url = format!("{}/v1/jobs?dry_run={}", a.agent.agent.trim_end_matches('/'), a.dry_run);
    if let Some(p) = &a.policy {
        url.push_str(&format!("&policy={p}"));
    }
    let mut r = c.post(url).body(text);
    if let Some(t) = a.agent.token()? {
        r = r.bearer_auth(t);
    }
    let body = answer(r.send().await.with_context(|| format!("cannot reach agent {}", a.agent.agent))?).await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

pub async fn twin(a: TwinArgs) -> anyhow::Result<()> {
    let c = reqwest::Client::new();
    let body = answer(
        a.agent.get(&c, "/v1/twin")?.send().await.with_context(|| format!("cannot reach agent {}", a.agent.agent))?,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}
