//! `nemutator env -- CMD`: references in the environment resolved, then the
//! command exec'd with them; a failure stops before the command runs, in one
//! line that holds no value. With the embedded sample secrets, and with a
//! real OpenBao (scripts/openbao.sh) through VAULT_ADDR and VAULT_TOKEN.

mod support;

use std::process::{Command, Output};

use nemutator_testkit::cluster::harness_var;
use support::BIN;

fn env(vars: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .arg("env")
        .arg("--")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{BIN}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const PRINT: &[&str] = &[
    "sh",
    "-c",
    "printf '%s|%s|%s' \"$DB_PASSWORD\" \"$DB_USER\" \"$PLAIN\"",
];

#[test]
fn references_become_values_in_the_command_environment() {
    let out = env(
        &[
            ("DB_PASSWORD", "vault:kv/data/app/db#password"),
            ("DB_USER", "vault:kv/data/app/db#username"),
            ("PLAIN", "kept"),
        ],
        PRINT,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "not-a-real-password|app|kept");
    assert_eq!(text(&out.stderr), "", "nothing said on success");
}

#[test]
fn a_failure_stops_before_the_command_in_one_line() {
    let out = env(
        &[
            ("DB_PASSWORD", "vault:kv/data/app/db#password"),
            ("MISSING", "vault:kv/data/app/db#nope"),
        ],
        &["sh", "-c", "echo the app ran"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "", "the command did not run");
    let err = text(&out.stderr);
    assert_eq!(
        err,
        "nemutator: MISSING: secret kv/data/app/db has no key \"nope\"\n"
    );

    let out = env(&[("BAD", "vault:no-key")], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("nemutator: BAD: invalid secret reference"));

    let out = env(&[], &["/nonexistent/app"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).starts_with("nemutator: exec /nonexistent/app: "));
}

#[test]
fn values_from_a_real_openbao_never_reach_the_logs() {
    let test = "values_from_a_real_openbao_never_reach_the_logs";
    let Some(addr) = harness_var(test, "NEMUTATOR_TEST_VAULT_ADDR", "OpenBao") else {
        return;
    };
    let Some(token) = harness_var(test, "NEMUTATOR_TEST_VAULT_TOKEN", "OpenBao") else {
        return;
    };
    let path = format!("nemutator-env-{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = vaultrs::client::VaultClientSettingsBuilder::default()
            .address(&addr)
            .token(token.clone())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let root = vaultrs::client::VaultClient::new(settings).unwrap_or_else(|e| panic!("{e}"));
        for (pw, user) in [("first-value-s3cr3t", "u1"), ("second-value-s3cr3t", "u2")] {
            let data = serde_json::json!({"password": pw, "user": user});
            vaultrs::kv2::set(&root, "secret", &path, &data)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let latest = format!("vault:secret/data/{path}#password");
    let pinned = format!("vault:secret/data/{path}#user#1");
    let vars = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_TOKEN", token.as_str()),
        ("DB_PASSWORD", latest.as_str()),
        ("DB_USER", pinned.as_str()),
        ("PLAIN", "p"),
        ("NEMUTATOR_LOG", "trace"),
    ];
    let out = env(&vars, PRINT);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "second-value-s3cr3t|u1|p");
    let logs = text(&out.stderr);
    for secret in ["s3cr3t", "u1", token.as_str()] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }

    let missing = format!("vault:secret/data/{path}-nope#password");
    let out = env(&[vars[0], vars[1], ("X", missing.as_str())], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not found") && !err.contains(&token), "{err}");
}
