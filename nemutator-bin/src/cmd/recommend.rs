//! `nemutator recommend`: recommendations for the workloads in the metrics source.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use nemutator_core::recommend::Recommender;
use nemutator_core::report;

use crate::cli::{Global, Output, RecommendArgs};
use crate::wiring::App;

/// A progress line on stderr (`recommend: 12/40 namespaces`), only when
/// stderr is a terminal; cleared when dropped.
struct Progress;

impl Progress {
    fn on_terminal() -> Option<Progress> {
        std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| Progress)
    }

    fn callback(&self) -> nemutator_core::recommend::Progress {
        Arc::new(|done, total| {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2Krecommend: {done}/{total} namespaces");
            let _ = err.flush();
        })
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
}

pub async fn run(global: &Global, args: RecommendArgs) -> anyhow::Result<ExitCode> {
    let app = App::new(global).await?;
    let loader = nemutator_metrics::loader_from_config(&app.config.metrics)?;
    let client = loader
        .load()
        .await
        .context("loading usage history")?
        .context("no metrics source")?;
    let progress = Progress::on_terminal();
    let recommender = Recommender::new(client, Arc::new(app.config.policies.clone()))
        .with_seasons(app.seasons.clone())
        .with_resolution(app.config.metrics.resolution())
        .with_concurrency(app.config.metrics.concurrency())
        // The page's charts: the distribution and current requests, asked in
        // the same batched requests.
        .with_distribution(matches!(args.output, Output::Html))
        .with_progress(progress.as_ref().map(Progress::callback));
    let recs = recommender.recommend_all(args.namespace.as_deref()).await;
    drop(progress);
    let recs = recs?;
    if let (Some(ns), true) = (&args.namespace, recs.is_empty()) {
        // An empty answer about one namespace says why.
        let known = recommender.namespaces().await?;
        anyhow::ensure!(
            !known.contains(ns),
            "no policy covers namespace {ns:?}: nothing to recommend"
        );
        let known = match known.is_empty() {
            true => "none".to_string(),
            false => known.join(", "),
        };
        anyhow::bail!("no workloads in namespace {ns:?} (namespaces with history: {known})");
    }
    let text = match args.output {
        Output::Table => report::table(&recs),
        Output::Csv => report::csv(&recs),
        Output::Html => report::html(&recs),
        Output::Json => serde_json::to_string_pretty(&recs)? + "\n",
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
