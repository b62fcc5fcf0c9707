//! Plain HTTP for tests: a bare GET against a node's HTTP port, and Prometheus text
//! parsed into samples, so tests can look at /metrics and /status as an operator would.
//! No HTTP client dependency: a test must see exactly what the server sent.

use std::collections::HashMap;
use std::time::Duration;

/// GET `http://{addr}{path}` with a bare HTTP/1.1 request; returns (status, body).
pub async fn get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8(buf)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("0").parse()?;
    // Bodies here are small; undo chunked transfer encoding if the server used it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16)?;
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Parses Prometheus text and returns sample values by `name{label=value,...}` (labels
/// sorted), with histogram and counter suffixes as the exposition names them.
pub fn samples(text: &str) -> anyhow::Result<HashMap<String, f64>> {
    // prometheus-parse does not know OpenMetrics' `# EOF` and unit lines.
    let lines = text
        .lines()
        .filter(|l| !l.starts_with("# EOF") && !l.starts_with("# UNIT"))
        .map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines)?;
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let key = if labels.is_empty() {
            s.metric.clone()
        } else {
            format!("{}{{{}}}", s.metric, labels.join(","))
        };
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => {
                out.insert(
                    format!("{key}#count"),
                    h.iter().map(|b| b.count).fold(0.0, f64::max),
                );
                continue;
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    Ok(out)
}
