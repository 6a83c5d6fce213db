//! A local server speaking Datadog's documented timeseries API,
//! `POST /api/v2/query/timeseries`, for the Datadog backend's tests
//! (Datadog itself cannot be reached from the test machines).
//!
//! It checks what Datadog checks and what the documentation specifies: the
//! `DD-API-KEY` and `DD-APPLICATION-KEY` headers (403 otherwise), a JSON
//! body `{"data":{"type":"timeseries_request","attributes":{"from","to",
//! "interval","queries":[{"data_source":"metrics","name","query"}],
//! "formulas":[{"formula"}]}}}` with nothing else in `attributes` (400
//! otherwise), and evaluates metric queries of the form
//! `SPACE:METRIC{TAG:VALUE,...} by {TAG,...}.rollup(TIME, SECONDS)`: time
//! aggregation first (each source series rolled up into intervals aligned
//! to the epoch, `[T, T + interval)`, of the points in `[from, to)`), then
//! space aggregation across the series of each group (a series without a
//! grouping tag is grouped under `TAG:N/A`). The answer is `data.attributes.{series[{group_tags,
//! query_index, unit}], times[], values[][]}`, times in milliseconds at the
//! start of each interval, with `X-RateLimit-*` headers on every answer.
//!
//! Where Datadog would silently coarsen a query to at most 1,500 points per
//! series, this server refuses it (400), so a client asking too many fails
//! its test. [`DatadogServer::throttle`] makes the next answers `429` with
//! `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset: 1`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// The most points per series Datadog returns.
pub const MAX_POINTS: i64 = 1_500;

/// Requests allowed per period in the rate-limit headers.
pub const RATE_LIMIT: u64 = 1_000;

/// One stored series: a metric, its tags (`key:value`) and its points
/// `(unix seconds, value)`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSeries {
    /// The metric name.
    pub metric: String,
    /// `key:value` tags.
    pub tags: Vec<String>,
    /// Points, unix seconds.
    pub points: Vec<(i64, f64)>,
}

impl StoredSeries {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| {
            let (k, v) = t.split_once(':')?;
            (k == key).then_some(v)
        })
    }
}

/// What the server saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP status answered.
    pub status: u16,
    /// The `DD-API-KEY` header.
    pub api_key: String,
    /// The `DD-APPLICATION-KEY` header.
    pub app_key: String,
    /// The body, as JSON (`Null` when not JSON).
    pub body: Value,
}

#[derive(Debug)]
struct State {
    series: Vec<StoredSeries>,
    api_key: String,
    app_key: String,
    throttle: AtomicU32,
    remaining: Mutex<u64>,
    seen: Mutex<Vec<Seen>>,
}

/// The server; it runs on the tokio runtime it was started on.
#[derive(Clone, Debug)]
pub struct DatadogServer {
    addr: SocketAddr,
    state: Arc<State>,
}

impl DatadogServer {
    /// Serve `series` on a free loopback port to clients holding these keys.
    pub async fn start(
        series: Vec<StoredSeries>,
        api_key: &str,
        app_key: &str,
    ) -> std::io::Result<DatadogServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = DatadogServer {
            addr: listener.local_addr()?,
            state: Arc::new(State {
                series,
                api_key: api_key.into(),
                app_key: app_key.into(),
                throttle: AtomicU32::new(0),
                remaining: Mutex::new(RATE_LIMIT),
                seen: Mutex::default(),
            }),
        };
        let state = server.state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(server)
    }

    /// The base URL (`metrics.datadog.site`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `n` requests `429`.
    pub fn throttle(&self, n: u32) {
        self.state.throttle.store(n, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn answer(code: u16, body: Value, remaining: u64, reset: u64) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (k, v) in [
        ("x-ratelimit-limit", RATE_LIMIT),
        ("x-ratelimit-period", 60),
        ("x-ratelimit-remaining", remaining),
        ("x-ratelimit-reset", reset),
    ] {
        h.insert(k, hyper::header::HeaderValue::from(v));
    }
    r
}

fn errors(message: &str) -> Value {
    json!({ "errors": [message] })
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (api_key, app_key) = (header("dd-api-key"), header("dd-application-key"));
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, response) = self.respond(&parts, &api_key, &app_key, &json);
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Seen {
                status,
                api_key,
                app_key,
                body: json,
            });
        response
    }

    fn respond(
        &self,
        parts: &http::request::Parts,
        api_key: &str,
        app_key: &str,
        body: &Value,
    ) -> (u16, Response<Full<Bytes>>) {
        let reset = 60
            - std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() % 60)
                .unwrap_or_default();
        let remaining = {
            let mut r = self.remaining.lock().unwrap_or_else(|p| p.into_inner());
            *r = r.saturating_sub(1);
            *r
        };
        let fail =
            |code: u16, message: &str| (code, answer(code, errors(message), remaining, reset));
        if parts.method != hyper::Method::POST || parts.uri.path() != "/api/v2/query/timeseries" {
            return fail(404, "Not found");
        }
        if api_key != self.api_key || app_key != self.app_key {
            return fail(403, "Forbidden");
        }
        let throttled = self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return (429, answer(429, errors("Too many requests"), 0, 1));
        }
        if !parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
        {
            return fail(415, "Content-Type must be application/json");
        }
        match self.evaluate(body) {
            Ok(data) => (200, answer(200, data, remaining, reset)),
            Err(message) => fail(400, &message),
        }
    }

    fn evaluate(&self, body: &Value) -> Result<Value, String> {
        let data = body.get("data").ok_or("missing data")?;
        if data.get("type").and_then(Value::as_str) != Some("timeseries_request") {
            return Err("data.type must be timeseries_request".into());
        }
        let a = data
            .get("attributes")
            .and_then(Value::as_object)
            .ok_or("missing data.attributes")?;
        if let Some(k) = a
            .keys()
            .find(|k| !["from", "to", "interval", "queries", "formulas"].contains(&k.as_str()))
        {
            return Err(format!("unknown attribute {k}"));
        }
        let int = |k: &str| a.get(k).and_then(Value::as_i64);
        let (from, to) = (int("from").ok_or("from")?, int("to").ok_or("to")?);
        if from >= to {
            return Err("from must be before to".into());
        }
        let interval = int("interval").filter(|i| *i >= 1000);
        let queries = a
            .get("queries")
            .and_then(Value::as_array)
            .filter(|q| !q.is_empty())
            .ok_or("queries must be a non-empty array")?;
        let mut by_name = BTreeMap::new();
        for q in queries {
            if q.get("data_source").and_then(Value::as_str) != Some("metrics") {
                return Err("data_source must be metrics".into());
            }
            let name = q.get("name").and_then(Value::as_str).ok_or("query name")?;
            let text = q.get("query").and_then(Value::as_str).ok_or("query")?;
            if by_name.insert(name.to_string(), text.to_string()).is_some() {
                return Err(format!("duplicate query name {name}"));
            }
        }
        let order: Vec<String> = match a.get("formulas").and_then(Value::as_array) {
            Some(f) => f
                .iter()
                .map(|f| {
                    f.get("formula")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| "formula".to_string())
                })
                .collect::<Result<_, _>>()?,
            None => queries
                .iter()
                .filter_map(|q| q.get("name").and_then(Value::as_str).map(str::to_string))
                .collect(),
        };
        let mut times: Vec<i64> = Vec::new();
        let (mut series, mut values) = (Vec::new(), Vec::new());
        for (index, name) in order.iter().enumerate() {
            let text = by_name
                .get(name)
                .ok_or_else(|| format!("formula {name:?} names no query (this server evaluates formulas that name one query)"))?;
            let q = Query::parse(text)?;
            let bucket = q
                .rollup
                .as_ref()
                .map(|r| r.1 * 1000)
                .or(interval)
                .ok_or("interval")?;
            let first = from.div_euclid(bucket) * bucket;
            let t: Vec<i64> = (0..)
                .map(|i| first + i * bucket)
                .take_while(|t| *t < to)
                .collect();
            if t.len() as i64 > MAX_POINTS {
                return Err(format!(
                    "{} points per series (at most {MAX_POINTS}: Datadog would coarsen the interval)",
                    t.len()
                ));
            }
            if !times.is_empty() && times != t {
                return Err("queries of one request must share their intervals".into());
            }
            times = t;
            for (group, row) in self.run(&q, &times, bucket, (from, to)) {
                series.push(json!({
                    "group_tags": group,
                    "query_index": index,
                    "unit": unit(&q.metric),
                }));
                values.push(row);
            }
        }
        Ok(json!({
            "data": {
                "id": "0",
                "type": "timeseries_response",
                "attributes": { "series": series, "times": times, "values": values }
            }
        }))
    }

    /// Time aggregation, then space aggregation by group.
    fn run(
        &self,
        q: &Query,
        times: &[i64],
        bucket: i64,
        (from, to): (i64, i64),
    ) -> Vec<(Vec<String>, Vec<Option<f64>>)> {
        let time_agg = q.rollup.as_ref().map_or("avg", |r| r.0.as_str());
        let mut groups: BTreeMap<Vec<String>, Vec<Vec<f64>>> = BTreeMap::new();
        for s in self.series.iter().filter(|s| {
            s.metric == q.metric && q.filters.iter().all(|(k, v)| s.tag(k) == Some(v.as_str()))
        }) {
            let mut cells: Vec<Vec<f64>> = vec![Vec::new(); times.len()];
            for &(t, v) in &s.points {
                let ms = t * 1000;
                if ms < from || ms >= to {
                    continue;
                }
                let Some(first) = times.first() else { break };
                let i = (ms - first).div_euclid(bucket);
                if let Some(cell) = usize::try_from(i).ok().and_then(|i| cells.get_mut(i)) {
                    cell.push(v);
                }
            }
            let rolled: Vec<Option<f64>> = cells.iter().map(|c| aggregate(time_agg, c)).collect();
            let key: Vec<String> =
                q.by.iter()
                    .map(|k| format!("{k}:{}", s.tag(k).unwrap_or("N/A")))
                    .collect();
            let group = groups
                .entry(key)
                .or_insert_with(|| vec![Vec::new(); times.len()]);
            for (cell, v) in group.iter_mut().zip(rolled) {
                cell.extend(v);
            }
        }
        groups
            .into_iter()
            .map(|(k, cells)| {
                let row: Vec<Option<f64>> = cells.iter().map(|c| aggregate(&q.space, c)).collect();
                (k, row)
            })
            .filter(|(_, row)| row.iter().any(Option::is_some))
            .collect()
    }
}

fn aggregate(how: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match how {
        "max" => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "min" => values.iter().copied().fold(f64::INFINITY, f64::min),
        "sum" => values.iter().sum(),
        _ => values.iter().sum::<f64>() / values.len() as f64,
    })
}

fn unit(metric: &str) -> Value {
    if metric.contains("cpu.requests") || metric.contains("cpu.limits") {
        json!([{"family": "cpu", "name": "core", "plural": "cores", "scale_factor": 1.0, "short_name": "cores"}, null])
    } else if metric.contains("cpu") {
        json!([{"family": "cpu", "name": "nanocore", "plural": "nanocores", "scale_factor": 1e-9, "short_name": "ncores"}, null])
    } else {
        json!([{"family": "bytes", "name": "byte", "plural": "bytes", "scale_factor": 1.0, "short_name": "B"}, null])
    }
}

/// `SPACE:METRIC{FILTERS} by {TAGS}.rollup(TIME, SECONDS)`.
#[derive(Debug)]
struct Query {
    space: String,
    metric: String,
    filters: Vec<(String, String)>,
    by: Vec<String>,
    rollup: Option<(String, i64)>,
}

const AGGREGATORS: [&str; 4] = ["avg", "max", "min", "sum"];

impl Query {
    fn parse(text: &str) -> Result<Query, String> {
        let bad = |what: &str| format!("unsupported query {text:?}: {what}");
        let (space, rest) = text.split_once(':').ok_or_else(|| bad("no aggregator"))?;
        if !AGGREGATORS.contains(&space) {
            return Err(bad("space aggregator"));
        }
        let (metric, rest) = rest.split_once('{').ok_or_else(|| bad("no scope"))?;
        let (scope, mut rest) = rest.split_once('}').ok_or_else(|| bad("unclosed scope"))?;
        let filters = if scope.trim() == "*" {
            Vec::new()
        } else {
            scope
                .split(',')
                .map(|f| {
                    f.trim()
                        .split_once(':')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| bad("filter"))
                })
                .collect::<Result<_, _>>()?
        };
        let mut by = Vec::new();
        if let Some(r) = rest.strip_prefix(" by {") {
            let (tags, r) = r.split_once('}').ok_or_else(|| bad("unclosed by"))?;
            by = tags.split(',').map(|t| t.trim().to_string()).collect();
            rest = r;
        }
        let rollup = match rest.strip_prefix(".rollup(") {
            None if rest.is_empty() => None,
            None => return Err(bad("trailing text")),
            Some(r) => {
                let args = r.strip_suffix(')').ok_or_else(|| bad("rollup"))?;
                let (how, secs) = args
                    .split_once(',')
                    .ok_or_else(|| bad("rollup arguments"))?;
                let how = how.trim();
                let secs: i64 = secs.trim().parse().map_err(|_| bad("rollup seconds"))?;
                if !AGGREGATORS.contains(&how) || secs < 1 {
                    return Err(bad("rollup"));
                }
                Some((how.to_string(), secs))
            }
        };
        Ok(Query {
            space: space.into(),
            metric: metric.into(),
            filters,
            by,
            rollup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        let q = Query::parse(
            "max:kubernetes.cpu.usage.total{kube_namespace:shop} by {kube_deployment,kube_container_name}.rollup(avg, 300)",
        );
        let q = q.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.metric, "kubernetes.cpu.usage.total");
        assert_eq!(q.filters, vec![("kube_namespace".into(), "shop".into())]);
        assert_eq!(q.by.len(), 2);
        assert_eq!(q.rollup, Some(("avg".into(), 300)));
        assert!(Query::parse("p95:x{*}").is_err());
        assert!(Query::parse("max:x{*}.rollup(avg)").is_err());
    }

    #[tokio::test]
    async fn time_then_space_aggregation() {
        let mk = |pod: &str, pts: Vec<(i64, f64)>| StoredSeries {
            metric: "m".into(),
            tags: vec!["kube_deployment:web".into(), format!("pod_name:{pod}")],
            points: pts,
        };
        let state = State {
            series: vec![
                mk("a", vec![(0, 1.0), (30, 3.0), (60, 10.0)]),
                mk("b", vec![(10, 5.0)]),
            ],
            api_key: String::new(),
            app_key: String::new(),
            throttle: AtomicU32::new(0),
            remaining: Mutex::new(1),
            seen: Mutex::default(),
        };
        let q = Query::parse("max:m{*} by {kube_deployment,kube_stateful_set}.rollup(avg, 60)")
            .unwrap_or_else(|e| panic!("{e}"));
        let out = state.run(&q, &[0, 60_000], 60_000, (0, 120_000));
        assert_eq!(
            out,
            vec![(
                vec![
                    "kube_deployment:web".to_string(),
                    "kube_stateful_set:N/A".to_string()
                ],
                vec![Some(5.0), Some(10.0)]
            )]
        );
    }
}
