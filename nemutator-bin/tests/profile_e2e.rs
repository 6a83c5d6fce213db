//! End-to-end: the real `nemutator profile` and `nemutator agent` binaries
//! profiling a real CPU-burning process, with pods looked up in the shared
//! Kubernetes API double (`nemutator-testkit`).
//!
//! The pod case is real down to the kernel: the test program is moved into a
//! fresh cgroup v2 directory named `cri-containerd-<id>.scope` (what
//! containerd's systemd driver creates), the API double serves a Pod whose
//! `containerID` is `containerd://<id>`, and the binary finds the process
//! through `/proc/PID/cgroup` and the cgroup tree as it would on a node.
//! Needs root and gcc (see tests/support/agent.rs).

#[path = "support/agent.rs"]
mod agent_support;
mod support;

use agent_support::{
    folded_share, require_root, serial, svg_share, Agent, ContainerCgroup, Hot, C_HOT,
};
use nemutator_testkit::{mk_pod, ApiServer};
use support::{run_cli, tmpdir};

const AGENT_TOKEN: &str = "e2e-agent-token";

/// An API double (HTTPS when `tls`) serving `shop/web-0` whose `app`
/// container is `cgroup`'s container; writes its token (and CA) to `dir`.
fn mk_api(cgroup: &ContainerCgroup, tls: bool, dir: &std::path::Path) -> (ApiServer, Vec<String>) {
    let api = ApiServer::builder()
        .token("kube-e2e-token")
        .tls(tls)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    api.store()
        .insert(&mk_pod("shop", "web-0", &[("app", &cgroup.container_id())]))
        .unwrap_or_else(|e| panic!("{e}"));
    let token_file = dir.join("kube-token");
    std::fs::write(&token_file, "kube-e2e-token\n").unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec![
        "--kube-api".to_owned(),
        api.url().to_owned(),
        "--kube-token-file".to_owned(),
        token_file.display().to_string(),
    ];
    if let Some(pem) = api.ca_pem() {
        let ca = dir.join("kube-ca.crt");
        std::fs::write(&ca, pem).unwrap_or_else(|e| panic!("{e}"));
        args.extend(["--kube-ca".to_owned(), ca.display().to_string()]);
    }
    (api, args)
}

#[test]
fn profile_pid_writes_folded_stacks_dominated_by_the_hot_function() {
    require_root();
    let _turn = serial();
    let hot = Hot::start();
    let dir = tmpdir("profile-pid");
    let out = dir.join("flame.folded");
    let pid = hot.pid().to_string();
    let (code, stdout, stderr) = run_cli(
        &[
            "profile",
            "--pid",
            &pid,
            "--duration",
            "2s",
            "--frequency",
            "199",
            "--output",
            &out.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(
        stdout.contains("samples") && stdout.contains("backend bpf"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let folded = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    let (share, total) = folded_share(&folded, C_HOT);
    assert!(total >= 10, "only {total} samples:\n{folded}");
    assert!(share > 0.5, "{C_HOT} in {share:.2} of samples:\n{folded}");
    assert!(folded.contains(&format!("main;{C_HOT}")), "{folded}");
}

#[test]
fn profile_pid_svg_with_the_perf_backend() {
    require_root();
    let _turn = serial();
    let hot = Hot::start();
    let dir = tmpdir("profile-svg");
    let out = dir.join("flame.svg");
    let pid = hot.pid().to_string();
    let (code, stdout, stderr) = run_cli(
        &[
            "profile",
            "--pid",
            &pid,
            "--duration",
            "1s",
            "--backend",
            "perf",
            "--output",
            &out.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("backend perf_event_open"), "{stdout}");
    let svg = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "not an SVG"
    );
    assert!(svg_share(&svg, C_HOT) > 0.5, "hot function not dominant");
}

#[test]
fn profile_errors_are_one_line() {
    let dir = tmpdir("profile-errors");
    let out = dir.join("x.svg").display().to_string();
    for (args, want) in [
        (
            vec!["profile", "--pid", "2147483632", "--duration", "1s"],
            "no such process: 2147483632",
        ),
        (vec!["profile", "--pod", "nope"], "invalid pod \"nope\""),
        (
            vec!["profile", "--pod", "a/b", "--kube-api", "ftp://x"],
            "expected http:// or https://",
        ),
        (
            vec!["profile", "--pid", "1", "--duration", "0s"],
            "--duration must be at least 1s",
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--output", &out]);
        let (code, _, stderr) = run_cli(&args, None);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("nemutator: "), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn profile_pod_through_the_api_double_and_a_real_cgroup() {
    require_root();
    let _turn = serial();
    let dir = tmpdir("profile-pod");
    let cgroup = ContainerCgroup::new("profile-pod");
    let hot = Hot::start();
    cgroup.add(hot.pid());
    let (api, kube_args) = mk_api(&cgroup, false, &dir);
    let out = dir.join("pod.folded").display().to_string();
    let mut args = vec![
        "profile",
        "--pod",
        "shop/web-0",
        "--container",
        "app",
        "--duration",
        "2s",
        "--frequency",
        "199",
        "--output",
        &out,
    ];
    args.extend(kube_args.iter().map(String::as_str));
    let (code, stdout, stderr) = run_cli(&args, None);
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    let folded = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    let (share, total) = folded_share(&folded, C_HOT);
    assert!(
        total >= 10 && share > 0.5,
        "{share:.2} of {total}:\n{folded}"
    );
    assert!(api.requests().iter().all(|r| r.bearer && r.status == 200));

    // A missing pod is the API server's one-line message.
    let mut args = vec!["profile", "--pod", "shop/nope", "--output", &out];
    args.extend(kube_args.iter().map(String::as_str));
    let (code, _, stderr) = run_cli(&args, None);
    assert_eq!(code, 1);
    assert_eq!(stderr.trim_end(), "nemutator: pods \"nope\" not found");
    drop(hot);
}

#[test]
fn agent_serves_pod_and_pid_profiles_over_https() {
    require_root();
    let _turn = serial();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(agent_scenario());
}

async fn agent_scenario() {
    let dir = tmpdir("agent");
    let cgroup = ContainerCgroup::new("agent");
    let hot = Hot::start();
    cgroup.add(hot.pid());
    let (api, kube_args) = mk_api(&cgroup, true, &dir);
    let token_file = dir.join("agent-token");
    std::fs::write(&token_file, format!("{AGENT_TOKEN}\n")).unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec!["--token-file", token_file.to_str().unwrap_or_default()];
    args.extend(kube_args.iter().map(String::as_str));
    let agent = Agent::start(&args, &[]);
    let client = agent.client();

    let r = client.request("GET", "/healthz", None, "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));

    // The pod form: API double -> containerID -> cgroup -> SVG.
    let r = client
        .request(
            "POST",
            "/api/v1/profiles",
            Some(AGENT_TOKEN),
            r#"{"pod":"shop/web-0","container":"app","duration":"2s","frequency":99,"format":"svg"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}; logs: {:?}", r.body, agent.logs());
    assert_eq!(r.content_type, "image/svg+xml");
    assert!(
        svg_share(&r.body, C_HOT) > 0.5,
        "hot function not dominant in the pod's SVG"
    );
    assert!(api
        .requests()
        .iter()
        .any(|q| q.path == "/api/v1/namespaces/shop/pods/web-0" && q.status == 200));

    // The pid form, folded.
    let body = format!(
        r#"{{"pid":{},"duration":"1s","format":"folded"}}"#,
        hot.pid()
    );
    let r = client
        .request("POST", "/api/v1/profiles", Some(AGENT_TOKEN), &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.content_type.starts_with("text/plain"));
    let (share, _) = folded_share(&r.body, C_HOT);
    assert!(share > 0.5, "{share:.2}:\n{}", r.body);

    // Errors: token, validation, missing pod.
    let r = client
        .request("POST", "/api/v1/profiles", None, &body)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = client
        .request("POST", "/api/v1/profiles", Some("wrong"), &body)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = client
        .request(
            "POST",
            "/api/v1/profiles",
            Some(AGENT_TOKEN),
            r#"{"pid":1,"duration":"90s"}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("1s to 60s"), "{}", r.body);
    let r = client
        .request(
            "POST",
            "/api/v1/profiles",
            Some(AGENT_TOKEN),
            r#"{"pod":"shop/gone"}"#,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.body, "pods \"gone\" not found\n");

    let r = client.request("GET", "/metrics", None, "").await;
    for line in [
        "nemutator_agent_profiles_total{outcome=\"ok\"} 2",
        "nemutator_agent_profiles_total{outcome=\"unauthorized\"} 2",
        "nemutator_agent_profiles_total{outcome=\"bad_request\"} 1",
        "nemutator_agent_profiles_total{outcome=\"not_found\"} 1",
        "nemutator_agent_profile_duration_seconds_count 3",
    ] {
        assert!(r.body.contains(line), "{line} missing:\n{}", r.body);
    }
    // The tokens never reach the logs.
    let logs = agent.logs().join("\n");
    assert!(!logs.contains(AGENT_TOKEN) && !logs.contains("kube-e2e-token"));
    // The pod was profiled through its cgroup v2 directory.
    assert!(
        logs.contains(&format!("Cgroup(\\\"{}", cgroup.dir.display())),
        "{logs}"
    );
    drop(hot);
}

#[test]
fn agent_refuses_to_start_without_a_token() {
    let (code, _, stderr) = run_cli(&["agent", "--listen", "127.0.0.1:0"], None);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("needs a bearer token: --token-file FILE or NEMUTATOR_AGENT_TOKEN"),
        "{stderr}"
    );
}

/// `profile --pod` with a kubeconfig (client-certificate auth) against the
/// real API server: the test plays the kubelet, writing the container's ID
/// into the pod's status through the status subresource.
#[test]
fn profile_pod_through_the_real_api_server_with_a_kubeconfig() {
    require_root();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let test = "profile_pod_through_the_real_api_server_with_a_kubeconfig";
    let Some(cluster) = rt.block_on(nemutator_testkit::cluster::TestCluster::from_env(test)) else {
        return;
    };
    let _turn = serial();
    let cgroup = ContainerCgroup::new("profile-kube");
    let hot = Hot::start();
    cgroup.add(hot.pid());
    let ns = format!("prof-{}", std::process::id());
    let name = "web-0";
    rt.block_on(async {
        use k8s_openapi::api::core::v1::{Namespace, Pod};
        use kube::api::{Patch, PatchParams, PostParams};
        use kube::Api;
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
                .unwrap_or_else(|e| panic!("{e}"));
        Api::<Namespace>::all(cluster.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        pods.create(&PostParams::default(), &pod)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": true, "restartCount": 0,
            "image": "registry.invalid/app:1", "imageID": "registry.invalid/app@sha256:00",
            "containerID": cgroup.container_id(),
            "state": {"running": {"startedAt": "2026-12-04T00:00:00Z"}},
        }]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("kubelet's status write: {e}"));
    });
    let dir = tmpdir("profile-kube");
    let out = dir.join("pod.folded").display().to_string();
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let pod = format!("{ns}/{name}");
    let (code, stdout, stderr) = run_cli(
        &[
            "profile",
            "--pod",
            &pod,
            "--kubeconfig",
            &kubeconfig,
            "--duration",
            "2s",
            "--frequency",
            "199",
            "--output",
            &out,
        ],
        None,
    );
    assert_eq!(code, 0, "stdout: {stdout} stderr: {stderr}");
    let folded = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    let (share, total) = folded_share(&folded, C_HOT);
    assert!(
        total >= 10 && share > 0.5,
        "{share:.2} of {total}:\n{folded}"
    );

    // A missing pod is the API server's own one-line message.
    let missing = format!("{ns}/nope");
    let (code, _, stderr) = run_cli(
        &[
            "profile",
            "--pod",
            &missing,
            "--kubeconfig",
            &kubeconfig,
            "--output",
            &out,
        ],
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(stderr.trim_end(), "nemutator: pods \"nope\" not found");
    drop(hot);
}
