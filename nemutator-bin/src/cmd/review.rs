//! `nemutator review FILE`: the admission pipeline, offline.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use nemutator_core::admission::patched_object;

use crate::cli::{Global, ReviewArgs};
use crate::wiring::App;

pub async fn run(global: &Global, args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let body = if args.file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("reading stdin")?;
        b
    } else {
        std::fs::read(&args.file).with_context(|| args.file.display().to_string())?
    };
    let app = App::new(global).await?;
    app.load_once().await?;
    let reviewed = app.admission.review(&body).await?;
    let out = if args.patched {
        serde_json::to_vec_pretty(&patched_object(&body, reviewed.patch.as_ref())?)?
    } else {
        let compact = reviewed.response.into_review_json();
        let v: serde_json::Value = serde_json::from_slice(&compact)?;
        serde_json::to_vec_pretty(&v)?
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.write_all(b"\n")?;
    Ok(ExitCode::SUCCESS)
}
