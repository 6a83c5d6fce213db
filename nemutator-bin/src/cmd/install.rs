//! `nemutator install`: every manifest that runs nemutator in a cluster, as
//! YAML on stdout (`| kubectl apply -f -`), or as a kustomize tree.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nemutator_core::install::{self, InstallOptions, Tls, WebhookCerts};

use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Namespace of nemutator's objects (created by the manifests).
    #[arg(long, short = 'n', env = "NEMUTATOR_INSTALL_NAMESPACE", default_value = install::DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Have cert-manager issue the serving certificate and inject its CA.
    #[arg(long, conflicts_with = "cert_dir")]
    pub cert_manager: bool,
    /// Keep the generated CA and serving pair in DIR and reuse them on the next
    /// run, so that applying again keeps the same caBundle (without it, every
    /// run makes a new pair).
    #[arg(long, env = "NEMUTATOR_INSTALL_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The webhook's image.
    #[arg(long, env = "NEMUTATOR_INSTALL_IMAGE", default_value = install::DEFAULT_IMAGE)]
    pub image: String,
    /// Webhook replicas.
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
    /// Have the API server call this https:// URL instead of the Service (a
    /// webhook run outside the cluster); its host joins the certificate.
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Write a kustomize base and default overlay into DIR instead of printing
    /// (certificates from cert-manager: committed files hold no key).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["cert_dir", "webhook_url"])]
    pub kustomize: Option<PathBuf>,
}

pub fn run(global: &Global, args: InstallArgs) -> anyhow::Result<ExitCode> {
    let mut options = InstallOptions::new(&args.namespace)?.with_replicas(args.replicas)?;
    options.image = args.image;
    match &global.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            options = options.with_config(&text, path)?;
        }
        None => eprintln!(
            "nemutator install: no --config: the webhook right-sizes from the embedded sample \
             history; give a configuration with your metrics source (docs/CONFIGURATION.md)"
        ),
    }
    if let Some(url) = &args.webhook_url {
        options = options.with_webhook_url(url)?;
    }
    if let Some(dir) = &args.kustomize {
        for (path, text) in install::kustomize_tree(&options)? {
            let file = dir.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        }
        eprintln!(
            "nemutator install: wrote {}; apply with kubectl apply -k {}",
            dir.display(),
            dir.join("overlays/default").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let tls = if args.cert_manager {
        Tls::CertManager
    } else {
        let names = options.serving_names();
        Tls::Generated(match &args.cert_dir {
            Some(dir) => WebhookCerts::load_or_generate(dir, &names)?,
            None => WebhookCerts::generate(&names)?,
        })
    };
    let yaml = install::manifests(&options, &tls).to_yaml()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "# nemutator {} in namespace {}: kubectl apply -f -",
        env!("CARGO_PKG_VERSION"),
        options.namespace
    )?;
    out.write_all(yaml.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
