//! One HTTP/1.1 request over a fresh TCP connection (`Connection: close`),
//! enough to drive the server API from tests without an HTTP client crate.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer: status, body text, and the body as JSON (`Null` if it is not).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub text: String,
    pub body: Value,
}

/// Sends a request and reads the whole answer; panics on I/O errors or
/// after [`crate::WAIT`].
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    match try_request(addr, method, path, headers, body, crate::WAIT).await {
        Ok(response) => response,
        Err(error) => panic!("{error}"),
    }
}

/// Why [`try_request`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Connecting, writing or reading failed (nothing listening, reset, ...).
    Io(String),
    /// No complete answer within the timeout.
    Timeout(String),
    /// The bytes received are not an HTTP/1.1 answer.
    Unreadable(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Io(what) | RequestError::Timeout(what) | RequestError::Unreadable(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for RequestError {}

/// As [`request`], but a failure is a value, not a panic: for probes of a
/// process that may not be listening yet (readiness, metrics of a node that
/// was killed).
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: std::time::Duration,
) -> Result<HttpResponse, RequestError> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = body.unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(error)) => return Err(RequestError::Io(format!("{method} http://{addr}{path}: {error}"))),
        Err(_) => {
            return Err(RequestError::Timeout(format!("{method} http://{addr}{path}: no answer within {timeout:?}")));
        }
    };
    parse(&raw).ok_or_else(|| {
        RequestError::Unreadable(format!(
            "{method} http://{addr}{path}: unreadable answer {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut body = raw[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Some(HttpResponse { status, text, body: json })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_answers() {
        let plain =
            parse(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 24\r\n\r\n{\"error\":\"unauthorized\"}").unwrap();
        assert_eq!(plain.status, 401);
        assert_eq!(plain.body, serde_json::json!({"error": "unauthorized"}));
        let chunked =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
                .unwrap();
        assert_eq!(chunked.body, serde_json::json!({"a": 1}));
    }
}
