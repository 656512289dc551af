//! A private `redis-server` for tests: its own free port on 127.0.0.1, its
//! own temporary directory, no persistence, killed when dropped.
//!
//! It never touches a Redis that is already running (such as a system
//! service on 6379): the port is one the OS hands out as free. It can be
//! stopped and started again on the same port, which is what outage tests
//! need. A machine without `redis-server` fails the test with the command
//! that installs it; Redis tests are never skipped.
//!
//! Everything here is synchronous (std processes and sockets), so it works
//! from any test and from `Drop`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails (it waits for `INFO`).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The port of the system Redis, which tests must leave alone.
const SYSTEM_PORT: u16 = 6379;

/// A running (or stopped) private Redis.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`.
    /// Panics when `redis-server` is missing or does not come up.
    pub fn start() -> RedisServer {
        let binary = find_binary();
        let mut last_failure = String::new();
        // A free port can be taken by someone else between our probe and
        // Redis binding it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("switchboard-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            let mut server = RedisServer { port, dir, binary: binary.clone(), child: None };
            match server.launch() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL, its own pid only) and waits for it to exit.
    /// Its data is gone: nothing is persisted.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP to its own pid): connections stay open
    /// and nothing answers, a Redis that hangs. [`thaw`](Self::thaw) resumes it.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Through the shell's `kill` builtin, which every machine has.
    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the redis-server is running");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{name} {}", child.id()))
            .status()
            .unwrap_or_else(|e| panic!("sh -c kill: {e}"));
        assert!(status.success(), "kill -{name} {} failed: {status}", child.id());
    }

    /// Stops the server if it runs and starts it again on the same port;
    /// panics if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(failure) = self.launch() {
            panic!("redis-server did not restart on port {}: {failure}", self.port);
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        assert_ne!(self.port, SYSTEM_PORT, "tests never use the system Redis port");
        let log_path = self.dir.join("redis.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1", "--daemonize", "no"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.child.as_ref().map(Child::id);
        loop {
            // Our own process, not some other Redis that took the port first.
            if server_pid(self.addr()).is_some_and(|answering| Some(answering) == pid) {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("exited with {status}; log:\n{}", read_log(&log_path)));
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!("no answer within {START_TIMEOUT:?}; log:\n{}", read_log(&log_path)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-server` from `PATH`, else `/usr/bin/redis-server`; a panic that
/// says how to install it otherwise.
fn find_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file());
    let fallback = Path::new("/usr/bin/redis-server");
    match on_path {
        Some(binary) => binary,
        None if fallback.is_file() => fallback.to_path_buf(),
        None => panic!(
            "redis-server is not installed, and the Redis tests need it. Install it with \
             `apt-get install -y redis-server` (Debian/Ubuntu; `scripts/test.sh` does this), then run the tests again."
        ),
    }
}

fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if port != SYSTEM_PORT {
            return port;
        }
    }
}

/// The pid of the Redis answering on `addr` (`INFO server`), if one does.
fn server_pid(addr: SocketAddr) -> Option<u32> {
    let mut stream = connect(addr)?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply.windows(11).any(|w| w == b"process_id:") || !reply.ends_with(b"\r\n") {
        let read = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        reply.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&reply);
    text.lines().find_map(|line| line.strip_prefix("process_id:")).and_then(|pid| pid.trim().parse().ok())
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let short = Duration::from_millis(200);
    let stream = TcpStream::connect_timeout(&addr, short).ok()?;
    stream.set_read_timeout(Some(short)).ok()?;
    stream.set_write_timeout(Some(short)).ok()?;
    Some(stream)
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True if a Redis on `addr` answers `PING` with `+PONG`.
    fn ping(addr: SocketAddr) -> bool {
        let Some(mut stream) = connect(addr) else { return false };
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    #[test]
    fn starts_stops_and_restarts_on_the_same_port() {
        let mut redis = RedisServer::start();
        let port = redis.port();
        assert_ne!(port, SYSTEM_PORT);
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/0"));
        assert!(ping(redis.addr()));
        redis.stop();
        assert!(!redis.is_running());
        assert!(!ping(redis.addr()));
        redis.restart();
        assert_eq!(redis.port(), port);
        assert!(ping(redis.addr()));
        let dir = redis.dir.clone();
        drop(redis);
        assert!(!ping(SocketAddr::from((Ipv4Addr::LOCALHOST, port))));
        assert!(!dir.exists());
    }
}
