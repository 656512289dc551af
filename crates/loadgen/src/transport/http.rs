//! A minimal HTTP/1.1 client for long-polling: keep-alive, Content-Length or
//! chunked bodies, and one transparent reconnect when the server closed an
//! idle keep-alive connection. Bodies and headers are bounded.

use anyhow::{Context, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::target::Target;

const MAX_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 16 << 20;

pub(crate) struct HttpConn {
    target: Target,
    index: usize,
    host: String,
    stream: Option<BufReader<TcpStream>>,
}

impl HttpConn {
    pub(crate) async fn connect(target: &Target, index: usize) -> anyhow::Result<Self> {
        let mut conn = Self { target: target.clone(), index, host: target.authority(index), stream: None };
        conn.reconnect().await?;
        Ok(conn)
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        let tcp = self.target.connect(self.index).await?;
        self.stream = Some(BufReader::with_capacity(4096, tcp));
        Ok(())
    }

    /// Sends one request and returns the body of a 200 response.
    pub(crate) async fn request(&mut self, method: &str, path_and_query: &str, body: &str) -> anyhow::Result<String> {
        let head = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let (status, body) = match self.exchange(&head, body).await {
            Ok(Some(answer)) => answer,
            // The server closed the kept-alive connection before answering:
            // nothing was processed, so one retry on a fresh one is safe.
            Ok(None) => {
                self.reconnect().await?;
                self.exchange(&head, body).await?.context("connection closed before a response")?
            }
            Err(e) => {
                self.stream = None;
                return Err(e);
            }
        };
        ensure!(status == 200, "HTTP {status}: {body:.80}");
        Ok(body)
    }

    /// `None` when the connection was closed before any response byte.
    async fn exchange(&mut self, head: &str, body: &str) -> anyhow::Result<Option<(u16, String)>> {
        if self.stream.is_none() {
            self.reconnect().await?;
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no connection");
        };
        let mut request = Vec::with_capacity(head.len() + body.len());
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(body.as_bytes());
        if stream.get_mut().write_all(&request).await.is_err() {
            return Ok(None);
        }
        let mut line = String::new();
        if read_line(stream, &mut line).await? == 0 {
            return Ok(None);
        }
        let status = parse_status(&line)?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for _ in 0..MAX_HEADERS {
            line.clear();
            ensure!(read_line(stream, &mut line).await? > 0, "eof in headers");
            let header = line.trim_end();
            if header.is_empty() {
                let body = match (chunked, length) {
                    (true, _) => read_chunked(stream).await?,
                    (false, Some(n)) => read_exact(stream, n).await?,
                    (false, None) => {
                        close = true;
                        read_to_end(stream).await?
                    }
                };
                if close {
                    self.stream = None;
                }
                let body = String::from_utf8(body).context("non-UTF-8 body")?;
                return Ok(Some((status, body)));
            }
            let Some((name, value)) = header.split_once(':') else {
                bail!("bad header line {header:.80}");
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        bail!("too many headers")
    }
}

async fn read_line(stream: &mut BufReader<TcpStream>, line: &mut String) -> anyhow::Result<usize> {
    let n = (&mut *stream).take(MAX_LINE).read_line(line).await?;
    ensure!(n == 0 || line.ends_with('\n'), "line too long");
    Ok(n)
}

fn parse_status(line: &str) -> anyhow::Result<u16> {
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next().unwrap_or_default();
    ensure!(version.starts_with("HTTP/1."), "not HTTP/1.x: {line:.80}");
    parts.next().and_then(|s| s.parse().ok()).context("bad status line")
}

async fn read_exact(stream: &mut BufReader<TcpStream>, n: usize) -> anyhow::Result<Vec<u8>> {
    ensure!(n <= MAX_BODY, "body of {n} bytes is too large");
    let mut body = vec![0; n];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn read_to_end(stream: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    (&mut *stream).take(MAX_BODY as u64 + 1).read_to_end(&mut body).await?;
    ensure!(body.len() <= MAX_BODY, "body too large");
    Ok(body)
}

async fn read_chunked(stream: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    // Each chunk is at least one byte, so the body bound bounds the loop.
    for _ in 0..=MAX_BODY {
        line.clear();
        ensure!(read_line(stream, &mut line).await? > 0, "eof in chunk size");
        let size = line.trim_end().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            for _ in 0..MAX_HEADERS {
                line.clear();
                if read_line(stream, &mut line).await? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
            bail!("too many trailers");
        }
        ensure!(body.len() + size <= MAX_BODY, "body too large");
        let start = body.len();
        body.resize(start + size + 2, 0);
        stream.read_exact(&mut body[start..]).await?;
        ensure!(body.ends_with(b"\r\n"), "chunk not followed by CRLF");
        body.truncate(start + size);
    }
    bail!("too many chunks")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `responses` one after the other on one connection.
    async fn serve(responses: Vec<&'static str>) -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            for r in responses {
                let _ = sock.read(&mut buf).await.unwrap();
                sock.write_all(r.as_bytes()).await.unwrap();
            }
        });
        Target::new(&format!("http://{addr}"), "/socket.io/", None).unwrap()
    }

    #[tokio::test]
    async fn reads_content_length_and_chunked_bodies_on_one_connection() {
        let target = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n42[\r\n2\r\n1]\r\n0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad",
        ])
        .await;
        let mut conn = HttpConn::connect(&target, 0).await.unwrap();
        assert_eq!(conn.request("POST", "/socket.io/", "40").await.unwrap(), "ok");
        assert_eq!(conn.request("GET", "/socket.io/", "").await.unwrap(), "42[1]");
        assert!(conn.request("GET", "/socket.io/", "").await.is_err());
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status("HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(parse_status("HTTP/1.0 400 Bad Request\r\n").unwrap(), 400);
        assert!(parse_status("SSH-2.0\r\n").is_err());
    }
}
