//! A hand-written HTTP/1.1 client (one request per connection) and an
//! Engine.IO long-polling client on top of it.

use std::collections::VecDeque;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{RS, WAIT};

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value (names compared without case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request (`Connection: close`) and reads the response.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    exchange(addr, &bytes).await
}

/// Writes raw request bytes on a new connection and reads one response.
pub(crate) async fn exchange(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let run = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect to the gateway");
        tcp.write_all(request).await.expect("write the request");
        read_response(&mut tcp).await
    };
    tokio::time::timeout(WAIT, run).await.unwrap_or_else(|_| {
        panic!("no HTTP response within {WAIT:?} to {:?}", String::from_utf8_lossy(&request[..request.len().min(120)]))
    })
}

/// Reads one response: up to its `Content-Length`, through its last chunk, or
/// to the end of the stream.
pub(crate) async fn read_response(tcp: &mut TcpStream) -> HttpResponse {
    let mut buf = Vec::new();
    loop {
        if let Some(response) = parse_response(&buf, false) {
            return response;
        }
        let mut chunk = [0u8; 16 * 1024];
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                return parse_response(&buf, true)
                    .unwrap_or_else(|| panic!("incomplete HTTP response: {:?}", String::from_utf8_lossy(&buf)));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse_response(buf: &[u8], at_eof: bool) -> Option<HttpResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().expect("numeric status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length") {
        let len: usize = len.parse().expect("numeric Content-Length");
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else if at_eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(HttpResponse { status, headers, body })
}

/// The body of a complete chunked encoding, or `None` while incomplete.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// One Engine.IO long-polling session, with the packets of the last GET not
/// yet consumed.
#[derive(Debug)]
pub(crate) struct Polling {
    pub(crate) addr: SocketAddr,
    /// The Engine.IO session id.
    pub(crate) sid: String,
    /// The whole handshake answer (`0{…}`).
    pub(crate) open: String,
    queue: VecDeque<String>,
}

impl Polling {
    /// The handshake: GET without `sid`, which must answer 200 with an open packet.
    pub(crate) async fn open(addr: SocketAddr) -> Polling {
        Polling::open_with(addr, &[]).await
    }

    pub(crate) async fn open_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Polling {
        let response = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", headers, None).await;
        assert_eq!(response.status, 200, "handshake: {}", response.text());
        let open = response.text();
        let sid = super::json_after(&open, "0")["sid"].as_str().expect("sid in the open packet").to_owned();
        Polling { addr, sid, open, queue: VecDeque::new() }
    }

    /// The request target of this session.
    pub(crate) fn target(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    /// One GET (it waits until the server has something to say).
    pub(crate) async fn get(&self) -> HttpResponse {
        http(self.addr, "GET", &self.target(), &[], None).await
    }

    /// One GET that may legitimately stay pending: `None` if it has not
    /// answered within `wait`.
    pub(crate) async fn try_get(&self, wait: std::time::Duration) -> Option<HttpResponse> {
        let addr = self.addr;
        let target = self.target();
        tokio::time::timeout(wait, async move {
            let mut tcp = TcpStream::connect(addr).await.expect("connect");
            let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            tcp.write_all(request.as_bytes()).await.expect("write");
            read_response(&mut tcp).await
        })
        .await
        .ok()
    }

    pub(crate) async fn post(&self, body: &str) -> HttpResponse {
        self.post_bytes(body.as_bytes()).await
    }

    pub(crate) async fn post_bytes(&self, body: &[u8]) -> HttpResponse {
        http(self.addr, "POST", &self.target(), &[("Content-Type", "text/plain;charset=UTF-8")], Some(body)).await
    }

    /// A POST that must be accepted with `ok`.
    pub(crate) async fn send(&self, payload: &str) {
        let response = self.post(payload).await;
        assert_eq!((response.status, response.text().as_str()), (200, "ok"), "POST {payload:?}");
    }

    /// The next packet from the server, polling when none is left over.
    pub(crate) async fn recv(&mut self) -> String {
        if self.queue.is_empty() {
            let response = self.get().await;
            assert_eq!(response.status, 200, "GET: {}", response.text());
            self.queue.extend(response.text().split(RS).map(str::to_owned));
        }
        self.queue.pop_front().expect("a payload has at least one packet")
    }

    /// Sends a CONNECT (or any packet) and returns the next packet.
    pub(crate) async fn request(&mut self, packet: &str) -> String {
        self.send(packet).await;
        self.recv().await
    }

    /// Waits until the session is gone: a GET answers 400 `Session ID unknown`
    /// (a GET that comes while the close is still under way may get the close
    /// packet `1`, or the noop `6` when the client itself closed).
    pub(crate) async fn assert_gone(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let response = self.get().await;
            if response.status == 400 {
                assert_eq!(response.text(), r#"{"code":1,"message":"Session ID unknown"}"#);
                return;
            }
            let text = response.text();
            assert!(response.status == 200 && (text == "1" || text == "6"), "a closing session answered {text:?}");
            assert!(tokio::time::Instant::now() < deadline, "session {} still open", self.sid);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
