//! `nemutator season`: fit the season model to a series and print what it learned.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;
use nemutator_core::config::Config;
use nemutator_core::metrics::{ContainersRequest, Resolution, Resource, SeriesRequest};
use nemutator_core::season::{
    heatmap_html, heatmap_svg, parse_series_csv, predictions_csv, season_report_json,
    DefaultSeasonModel, SeasonConfig, SeasonModel, SeasonProfile,
};
use nemutator_core::units::HumanDuration;

use crate::cli::Global;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SeasonOutput {
    /// A summary for people.
    Text,
    /// `{"periods": [...], "peak_windows": [...], "predictions": [...]}`.
    Json,
    /// Only the predictions: `timestamp,season,forecast`.
    Csv,
    /// A heat map of load by hour and weekday with the peak windows (HTML page).
    Html,
    /// The same heat map as an SVG image.
    Svg,
}

#[derive(Debug, clap::Args)]
pub struct SeasonArgs {
    /// CSV with a header and rows `timestamp,value` (unix seconds), or `-` for
    /// stdin. Without it, the cluster-wide CPU usage of the metrics source.
    #[arg(long, short = 'i', env = "NEMUTATOR_SEASON_INPUT")]
    pub input: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = SeasonOutput::Text)]
    pub output: SeasonOutput,
    /// First prediction, unix seconds.
    #[arg(long, requires = "predict_to")]
    pub predict_from: Option<i64>,
    /// Last prediction, unix seconds.
    #[arg(long, requires = "predict_from")]
    pub predict_to: Option<i64>,
    /// Seconds between predictions (or a duration such as 30m).
    #[arg(long, default_value = "3600")]
    pub step: String,
    /// Lead time: the season turns to peak this long before a predicted peak
    /// (default: `seasons.lead` of the configuration, 1h without one).
    #[arg(long, env = "NEMUTATOR_SEASON_LEAD")]
    pub lead: Option<HumanDuration>,
}

fn parse_step(s: &str) -> anyhow::Result<i64> {
    let secs = match s.parse::<i64>() {
        Ok(n) => n,
        Err(_) => s.parse::<HumanDuration>()?.as_secs() as i64,
    };
    anyhow::ensure!(secs > 0, "--step must be positive");
    Ok(secs)
}

/// The cluster-wide CPU usage of the metrics source over `seasons.history`,
/// at `seasons.step`, as the webhook fits it: one series request per
/// namespace.
async fn cluster_series(config: &Config) -> anyhow::Result<Vec<(i64, f64)>> {
    let loader = nemutator_metrics::loader_from_config(&config.metrics)?;
    let client = loader.load().await?.context("no metrics source")?;
    let info = client.info().await?;
    let rate_window = config
        .metrics
        .resolution()
        .unwrap_or(info.resolution)
        .rate_window;
    let resolution = Resolution::new(
        config.seasons.step.0,
        rate_window.max(config.seasons.step.0),
    );
    let containers = client
        .containers(ContainersRequest {
            namespace: None,
            window: config.seasons.history.0,
            end: info.now,
        })
        .await?;
    let mut namespaces: Vec<String> = containers
        .into_iter()
        .map(|c| c.workload.namespace)
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut sum = std::collections::BTreeMap::<i64, f64>::new();
    for namespace in namespaces {
        let batch = client
            .series(SeriesRequest {
                namespace,
                resource: Resource::Cpu,
                window: config.seasons.history.0,
                end: info.now,
                resolution,
            })
            .await?;
        for (t, v) in batch.workloads.into_values().flatten() {
            *sum.entry(t).or_default() += v;
        }
    }
    Ok(sum.into_iter().collect())
}

fn summary(profile: &SeasonProfile) -> String {
    let mut s = String::new();
    if profile.periods().is_empty() {
        s.push_str("periods: none (no significant rhythm; one season)\n");
    } else {
        let periods: Vec<String> = profile
            .periods()
            .iter()
            .map(|p| HumanDuration::from_secs(*p as u64).to_string())
            .collect();
        s.push_str(&format!("periods: {}\n", periods.join(", ")));
    }
    let windows = profile.peak_windows();
    if windows.is_empty() {
        s.push_str("peak windows: none\n");
    } else {
        s.push_str("peak windows (UTC):\n");
        for w in windows {
            s.push_str(&format!("  {}\n", w.label()));
        }
    }
    s.push_str(&format!(
        "lead time: {}\n",
        HumanDuration::from_secs(profile.lead().max(0) as u64)
    ));
    s
}

pub async fn run(global: &Global, args: SeasonArgs) -> anyhow::Result<ExitCode> {
    // Of `seasons:`, `lead` applies to any series; `history` and `step` shape
    // the series read from the metrics source (an --input series is taken
    // whole, at its own resolution); `refit`, `enabled` and `state_file`
    // concern the webhook's learning only.
    let config = Config::load(global.config.as_deref())?;
    let series = match &args.input {
        Some(path) => {
            let text = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading stdin")?
            } else {
                std::fs::read_to_string(path).with_context(|| path.display().to_string())?
            };
            parse_series_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => cluster_series(&config).await?,
    };
    let step = parse_step(&args.step)?;
    let lead = args.lead.unwrap_or(config.seasons.lead);
    let model = DefaultSeasonModel::new(SeasonConfig {
        lead: lead.as_secs() as i64,
        ..SeasonConfig::default()
    });
    let profile = model.fit(&series).map_err(|e| anyhow::anyhow!("{e}"))?;
    let predictions = match (args.predict_from, args.predict_to) {
        (Some(from), Some(to)) => {
            anyhow::ensure!(from <= to, "--predict-from is after --predict-to");
            let n = (to - from) / step + 1;
            anyhow::ensure!(
                n <= nemutator_core::season::MAX_PREDICTIONS as i64,
                "too many predictions ({n}); raise --step"
            );
            profile.predict(from, to, step)
        }
        _ => Vec::new(),
    };
    let out = match args.output {
        SeasonOutput::Json => {
            serde_json::to_string_pretty(&season_report_json(&profile, &predictions))? + "\n"
        }
        SeasonOutput::Csv => predictions_csv(&predictions),
        SeasonOutput::Html => heatmap_html(&profile, &series),
        SeasonOutput::Svg => heatmap_svg(&profile, &series),
        SeasonOutput::Text => {
            let mut s = summary(&profile);
            for p in &predictions {
                s.push_str(&format!("{} {} {:.3}\n", p.timestamp, p.season, p.forecast));
            }
            s
        }
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
