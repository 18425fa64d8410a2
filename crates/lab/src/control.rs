//! The control socket of a running `lab up`: `<state>/control.sock`, a unix stream socket
//! that answers `lab status` and `lab conntrack` from the live lab (instead of files the
//! packet loop would have to rewrite every second).
//!
//! Protocol: one request line (`status`, `conntrack`, `conntrack <node>`), then the answer
//! as text until the server closes the connection. An answer that starts with `error: ` is
//! an error message.
//!
//! Threads: the socket is served by a tokio current-thread runtime on its own thread
//! (`nplab-control`): accepting, reading and writing never touch the packet loop. A request
//! is handed to the packet loop through a channel ([`Control::next`], polled once per
//! fabric call: a `try_recv`, no syscall), which answers it between two batches of packets
//! with what only it can see (the nodes' conntrack tables, the pods' state), and the tokio
//! task writes the answer back. The packet loop itself stays on its dedicated thread with
//! poll(2) (see the README, "Real mode vs the kernel", for the measurement).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// The socket's file name in the state directory.
pub const SOCKET: &str = "control.sock";

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// The pods' readiness and restarts.
    Status,
    /// The conntrack table of one node, or of every node.
    Conntrack(Option<String>),
}

impl Query {
    /// Parses a request line.
    pub fn parse(line: &str) -> Option<Query> {
        let mut w = line.split_whitespace();
        let q = match (w.next()?, w.next()) {
            ("status", None) => Query::Status,
            ("conntrack", node) => Query::Conntrack(node.map(str::to_string)),
            _ => return None,
        };
        w.next().is_none().then_some(q)
    }
    /// The request line.
    pub fn line(&self) -> String {
        match self {
            Query::Status => "status".into(),
            Query::Conntrack(None) => "conntrack".into(),
            Query::Conntrack(Some(n)) => format!("conntrack {n}"),
        }
    }
}

/// A query waiting for the packet loop's answer.
#[derive(Debug)]
pub struct Request {
    /// What was asked.
    pub query: Query,
    reply: oneshot::Sender<String>,
}

impl Request {
    /// Answers (the client may be gone: then nothing happens).
    pub fn answer(self, text: String) {
        let _ = self.reply.send(text);
    }
}

/// The server side, owned by the packet loop.
#[derive(Debug)]
pub struct Control {
    rx: mpsc::Receiver<Request>,
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long a client may take to send its line, and the packet loop to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

impl Control {
    /// Binds `<dir>/control.sock` (a stale file from a crashed lab is replaced: the caller
    /// holds the lab lock) and starts the thread serving it.
    pub fn start(dir: &Path) -> io::Result<Control> {
        let path = dir.join(SOCKET);
        let _ = std::fs::remove_file(&path);
        let std_listener = std::os::unix::net::UnixListener::bind(&path)?;
        std_listener.set_nonblocking(true)?;
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("nplab-control".into())
            .spawn(move || rt.block_on(serve(std_listener, tx, stop_rx)))?;
        Ok(Control {
            rx,
            path,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The next request waiting for an answer, if any (never blocks).
    pub fn next(&self) -> Option<Request> {
        self.rx.try_recv().ok()
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    std_listener: std::os::unix::net::UnixListener,
    tx: mpsc::Sender<Request>,
    mut stop: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::UnixListener::from_std(std_listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            conn = listener.accept() => {
                if let Ok((stream, _)) = conn {
                    tokio::spawn(client(stream, tx.clone()));
                }
            }
        }
    }
}

async fn client(stream: tokio::net::UnixStream, tx: mpsc::Sender<Request>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd.take(4096));
    let read = rd.read_line(&mut line);
    let answer = match tokio::time::timeout(TIMEOUT, read).await {
        Ok(Ok(_)) => match Query::parse(&line) {
            Some(query) => ask_loop(&tx, query).await,
            None => format!("error: unknown request {:?}\n", line.trim()),
        },
        _ => return,
    };
    let _ = wr.write_all(answer.as_bytes()).await;
    let _ = wr.shutdown().await;
}

/// Hands `query` to the packet loop and waits for its answer.
async fn ask_loop(tx: &mpsc::Sender<Request>, query: Query) -> String {
    let (reply, answer) = oneshot::channel();
    if tx.send(Request { query, reply }).is_err() {
        return "error: the lab is stopping\n".into();
    }
    match tokio::time::timeout(TIMEOUT, answer).await {
        Ok(Ok(text)) => text,
        _ => "error: the packet loop did not answer in 5 s\n".into(),
    }
}

/// Client side: asks the lab whose state directory is `dir`. `Err` if no lab answers (no
/// socket, refused, timeout); `Ok(Err(msg))` if it answered with an error.
pub fn ask(dir: &Path, query: &Query) -> io::Result<Result<String, String>> {
    let mut s = UnixStream::connect(dir.join(SOCKET))?;
    s.set_read_timeout(Some(TIMEOUT + Duration::from_secs(1)))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(format!("{}\n", query.line()).as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if out.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "empty answer"));
    }
    Ok(match out.strip_prefix("error: ") {
        Some(e) => Err(e.trim_end().to_string()),
        None => Ok(out),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(Query::parse("status\n"), Some(Query::Status));
        assert_eq!(Query::parse("conntrack"), Some(Query::Conntrack(None)));
        assert_eq!(
            Query::parse("conntrack worker1\n"),
            Some(Query::Conntrack(Some("worker1".into())))
        );
        assert_eq!(Query::parse("conntrack a b"), None);
        assert_eq!(Query::parse("status x"), None);
        assert_eq!(Query::parse(""), None);
        assert_eq!(Query::parse("rm -rf"), None);
        for q in [Query::Status, Query::Conntrack(Some("n".into()))] {
            assert_eq!(Query::parse(&q.line()), Some(q));
        }
    }

    #[test]
    fn answers_come_from_the_loop() {
        let dir = std::env::temp_dir().join(format!("nplab-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ctl = Control::start(&dir).unwrap();
        // The "packet loop": answers whatever arrives.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        let lp = std::thread::spawn(move || {
            while !d2.load(std::sync::atomic::Ordering::Relaxed) {
                while let Some(r) = ctl.next() {
                    let text = match &r.query {
                        Query::Status => "pods: 2\n".to_string(),
                        Query::Conntrack(n) => format!("table of {n:?}\n"),
                    };
                    r.answer(text);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(ctl);
        });
        assert_eq!(ask(&dir, &Query::Status).unwrap(), Ok("pods: 2\n".into()));
        assert_eq!(
            ask(&dir, &Query::Conntrack(Some("w1".into()))).unwrap(),
            Ok("table of Some(\"w1\")\n".into())
        );
        // A malformed request gets an error answer.
        let mut s = UnixStream::connect(dir.join(SOCKET)).unwrap();
        s.write_all(b"bogus\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("error: unknown request"), "{out}");
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        lp.join().unwrap();
        assert!(!dir.join(SOCKET).exists(), "socket removed on drop");
        assert!(ask(&dir, &Query::Status).is_err(), "nobody answers");
        let _ = std::fs::remove_dir(&dir);
    }
}
