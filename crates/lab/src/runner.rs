//! PLACEHOLDER — the lead replaces this file: turns a `Cluster` into a running sim world and
//! produces results.

use crate::cluster::Cluster;
use crate::report::ScenarioResult;

pub struct RunOptions {
    pub json: bool,
    /// 1-based number of the request to trace (`--trace` = 1, `--trace-request K` = K).
    pub trace: Option<usize>,
    pub real: bool,
}

pub fn run(cluster: &Cluster, opts: &RunOptions) -> anyhow::Result<ScenarioResult> {
    let _ = (cluster, opts);
    anyhow::bail!("runner not implemented yet")
}
