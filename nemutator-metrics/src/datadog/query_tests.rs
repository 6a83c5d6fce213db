use super::*;

fn mk_series(kind: usize, tags: &[&str], unit: Option<&str>) -> ResponseSeries {
    ResponseSeries {
        group_tags: tags.iter().map(|t| t.to_string()).collect(),
        query_index: kind,
        unit: unit.map(|u| {
            vec![
                Some(Unit {
                    name: u.to_string(),
                }),
                None,
            ]
        }),
    }
}

#[test]
fn queries_group_by_workload_and_container() {
    let (q, blocks) = usage_queries(Resource::Cpu, "shop", 300, (true, true)).unwrap_or_default();
    assert_eq!(q.len(), 12);
    assert_eq!(blocks, vec![Block::Usage, Block::Requests, Block::Oom]);
    assert_eq!(
            q[8].query,
            "max:kubernetes.containers.last_state.terminated{kube_namespace:shop,reason:oomkilled} by {kube_deployment,kube_container_name}.rollup(max, 300)"
        );
    assert_eq!(
            q[5].query,
            "max:kubernetes.cpu.requests{kube_namespace:shop} by {kube_stateful_set,kube_container_name}.rollup(max, 300)"
        );
    assert_eq!(
            q[0].query,
            "max:kubernetes.cpu.usage.total{kube_namespace:shop} by {kube_deployment,kube_container_name}.rollup(avg, 300)"
        );
    assert_eq!(q[1].name, "q1");
    let (q, _) = usage_queries(Resource::Memory, "shop", 60, (false, false)).unwrap_or_default();
    assert_eq!(q.len(), 4);
    assert!(q[2]
        .query
        .ends_with("by {kube_daemon_set,kube_container_name}.rollup(max, 60)"));
    assert!(usage_queries(Resource::Cpu, "a} by {x", 60, (false, false)).is_err());
    assert_eq!(listing_interval(604_800), 3600);
    assert_eq!(listing_interval(90 * 86_400), 7200);
    let l = listing_queries(None, 3600).unwrap_or_default();
    assert!(l[0]
        .query
        .starts_with("max:kubernetes.memory.working_set{*} by {kube_namespace,"));
    let body = serde_json::to_value(TimeseriesRequest::new(q, 0, 600, 60)).unwrap_or_default();
    assert_eq!(body["data"]["type"], "timeseries_request");
    assert_eq!(body["data"]["attributes"]["to"], 600_000);
    assert_eq!(body["data"]["attributes"]["interval"], 60_000);
    assert_eq!(body["data"]["attributes"]["formulas"][3]["formula"], "q3");
    assert_eq!(
        body["data"]["attributes"]["queries"][0]["data_source"],
        "metrics"
    );
}

#[test]
fn answers_become_steps_in_cores() {
    let answer = ResponseAttributes {
        series: vec![
            mk_series(
                0,
                &["kube_deployment:web", "kube_container_name:app"],
                Some("nanocore"),
            ),
            mk_series(
                1,
                &["kube_stateful_set:N/A", "kube_container_name:app"],
                None,
            ),
        ],
        times: vec![0, 300_000],
        values: vec![vec![Some(5e8), None], vec![Some(1.0), Some(2.0)]],
    };
    let mut out = BTreeMap::new();
    assert!(container_points(&answer, &[Block::Usage], Resource::Cpu, "ns", 300, &mut out).is_ok());
    let web = ContainerRef::new(
        WorkloadKey::new("ns", WorkloadKind::Deployment, "web"),
        "app",
    );
    assert_eq!(out.len(), 1, "N/A is no workload");
    assert_eq!(out[&web].iter().collect::<Vec<_>>(), vec![(&300, &0.5)]);
    let bad = ResponseAttributes {
        values: vec![vec![Some(1.0)]],
        ..answer
    };
    assert!(container_points(&bad, &[Block::Usage], Resource::Cpu, "ns", 300, &mut out).is_err());
    let far = ResponseAttributes {
        series: vec![mk_series(
            0,
            &["kube_deployment:web", "kube_container_name:app"],
            None,
        )],
        times: vec![i64::MAX],
        values: vec![vec![Some(1.0)]],
    };
    assert!(container_points(&far, &[Block::Usage], Resource::Memory, "ns", 300, &mut out).is_ok());
    let decoded = TimeseriesResponse::decode(b"{\"errors\":[\"Forbidden\"]}");
    assert_eq!(
        decoded.ok().and_then(|r| r.errors),
        Some(vec!["Forbidden".to_string()])
    );
    let e = TimeseriesResponse::decode(b"{\n")
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|e| e.starts_with("metrics data: datadog answer: ") && !e.contains('\n')));
    let odd = mk_series(0, &[], Some("percent"));
    assert!(odd.scale(Resource::Cpu).is_err());
    assert_eq!(
        mk_series(0, &[], Some("mebibyte"))
            .scale(Resource::Memory)
            .ok(),
        Some(1_048_576.0)
    );
}

/// A series' query index, group tags, unit and values.
type MkSeries = (usize, Vec<String>, Option<String>, Vec<Option<f64>>);

/// An answer of well-shaped series (values cut to the times), unless
/// `broken`.
fn mk_answer(series: Vec<MkSeries>, times: Vec<i64>, broken: bool) -> ResponseAttributes {
    let n = times.len() + usize::from(broken);
    let (series, values) = series
        .into_iter()
        .map(|(query_index, group_tags, unit, mut values)| {
            values.resize(n, None);
            let unit = unit.map(|name| vec![Some(Unit { name }), None]);
            let s = ResponseSeries {
                group_tags,
                query_index,
                unit,
            };
            (s, values)
        })
        .unzip();
    ResponseAttributes {
        series,
        times,
        values,
    }
}

proptest::proptest! {
    /// Whatever Datadog (or something in its place) answers, reading it
    /// never panics, and an error is one line.
    #[test]
    fn any_answer_is_read_without_panic(
        series in proptest::collection::vec(
            (
                0usize..20,
                proptest::collection::vec(
                    "(kube_deployment|kube_container_name|kube_namespace|x)(:[a-zA-Z0-9/_-]{0,8})?",
                    0..4,
                ),
                proptest::option::of("(nanocore|core|byte|mebibyte|percent|)"),
                proptest::collection::vec(proptest::option::of(proptest::num::f64::ANY), 6),
            ),
            0..5,
        ),
        times in proptest::collection::vec(proptest::num::i64::ANY, 0..6),
        broken in proptest::bool::weighted(0.1),
        step in 1i64..100_000,
    ) {
        let answer = mk_answer(series, times, broken);
        let blocks = [Block::Usage, Block::Requests, Block::Oom];
        for resource in Resource::ALL {
            let mut points = BTreeMap::new();
            let mut current = BTreeMap::new();
            let mut killed = std::collections::BTreeSet::new();
            let mut totals = BTreeMap::new();
            let results = [
                container_points(&answer, &blocks, resource, "ns", step, &mut points),
                current_requests(&answer, &blocks, resource, "ns", step, (i64::MIN, i64::MAX), &mut current),
                oom_kills(&answer, &blocks, "ns", &mut killed),
                workload_points(&answer, resource, "ns", step, &mut totals),
            ];
            for e in results.into_iter().filter_map(Result::err) {
                proptest::prop_assert!(!e.to_string().contains('\n'));
            }
            for v in points.values().flat_map(|p| p.values()) {
                proptest::prop_assert!(!v.is_nan());
            }
        }
        let _ = listed(&answer, None, step, i64::MIN);
    }

    #[test]
    fn any_body_decodes_or_fails_in_one_line(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
        if let Err(e) = TimeseriesResponse::decode(&body) {
            proptest::prop_assert!(!e.to_string().contains('\n'));
        }
    }
}
