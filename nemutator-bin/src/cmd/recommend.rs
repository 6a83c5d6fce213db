//! `nemutator recommend`: recommendations for the workloads in the metrics source.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use nemutator_core::recommend::Recommender;
use nemutator_core::report;

use crate::cli::{Global, Output, RecommendArgs};
use crate::wiring::App;

pub async fn run(global: &Global, args: RecommendArgs) -> anyhow::Result<ExitCode> {
    let app = App::new(global)?;
    let loader = nemutator_metrics::loader_from_config(&app.config.metrics)?;
    let source = loader
        .load()
        .await
        .context("loading usage history")?
        .context("no metrics source")?;
    let recommender = Recommender::new(source, Arc::new(app.config.policies.clone()))
        .with_seasons(app.seasons.clone());
    let recs = recommender.recommend_all(args.namespace.as_deref()).await?;
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
