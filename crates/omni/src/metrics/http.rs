//! HTTP request metrics, by method, route template and status class. The
//! route is the pattern the router matched (`/api/v1/resources/{kind}/{namespace}`),
//! never the raw path, so ids never become labels.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: &'static str,
}

type Latencies = Family<RequestLabels, Histogram, fn() -> Histogram>;

#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Latencies,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            // 1 ms .. ~33 s: a cached read to a large batch apply.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        }
    }
}

impl HttpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "omni_http_requests",
            "HTTP requests answered, by method, route template and status class",
            self.requests.clone(),
        );
        registry.register(
            "omni_http_request_duration_seconds",
            "Time to the response head, by method, route template and status class",
            self.latency.clone(),
        );
    }

    fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }
}

/// Wraps every route of `app` (after routing, so the matched pattern is
/// known; a request no route matched counts as `unmatched`).
pub fn track(app: Router, metrics: HttpMetrics) -> Router {
    app.layer(axum::middleware::from_fn_with_state(metrics, measure))
}

async fn measure(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    let labels = RequestLabels {
        method,
        route,
        status: status_class(response.status().as_u16()),
    };
    metrics.observe(labels, started.elapsed().as_secs_f64());
    response
}

/// The standard methods by name, anything else as one value: a client
/// must not be able to grow the series count.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn labels_use_the_route_template_not_the_path() {
        let metrics = HttpMetrics::default();
        let app = track(
            Router::new().route("/things/{id}", get(|| async { "ok" })),
            metrics.clone(),
        );
        for path in ["/things/a", "/things/b", "/nope/secret-id"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "omni_http_requests_total{method=\"GET\",route=\"/things/{id}\",status=\"2xx\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "omni_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"4xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("/things/a") && !text.contains("secret-id"),
            "{text}"
        );
    }

    #[test]
    fn methods_and_statuses_are_a_closed_set() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(503), "5xx");
    }
}
