//! `lab serve` (issue 13): the JSON API driven over HTTP, and the page walked in a real
//! headless Chromium through the blog's three steps.
//!
//! Each test starts the `lab` binary on an ephemeral 127.0.0.1 port (`--port 0`; the URL is
//! read from its first stdout line) and kills it by pid when done. The HTTP client is a
//! few lines over `TcpStream` (HTTP/1.1, `Connection: close`): the API is plain JSON on
//! localhost, so no client crate is needed.
//!
//! The browser test needs /usr/bin/chromium, node and playwright-core
//! (`npm install --prefix target/serve-e2e playwright-core@1.48.2`, done by .ci/run); without
//! them it is skipped with the reason printed, except under CI=true where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// A running `lab serve`, killed (by its pid) when dropped.
struct Server {
    child: Child,
    addr: String,
    /// The rest of its stdout (after the URL line).
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Server {
    fn start(scenario: &str) -> Server {
        Server::start_with(&[scenario])
    }

    /// `lab serve ARGS --port 0`.
    fn start_with(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lab"))
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start lab serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("read the URL line");
        let addr = line
            .split_whitespace()
            .nth(1)
            .and_then(|u| u.strip_prefix("http://"))
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line from lab serve: {line:?}")
            });
        assert!(addr.starts_with("127.0.0.1:"), "bound to {addr}");
        Server {
            child,
            addr,
            stdout: Some(stdout),
        }
    }

    /// One request; (status, body).
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP head");
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        (
            status,
            if chunked {
                dechunk(rest)
            } else {
                rest.to_string()
            },
        )
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let b = body.map(|v| v.to_string());
        let (status, text) = self.http(method, path, b.as_deref());
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, v)
    }
}

impl Server {
    /// Sends `signal`, waits up to `secs` for the exit; its status and the rest of stdout.
    fn stop_with(&mut self, signal: i32, secs: u64) -> (std::process::ExitStatus, String) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running {secs} s after signal {signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut rest = String::new();
        if let Some(mut out) = self.stdout.take() {
            out.read_to_string(&mut rest).unwrap();
        }
        (status, rest)
    }
}

impl Drop for Server {
    /// SIGTERM first, so that a real-mode lab is torn down even when a test fails half-way
    /// (a killed `lab serve --real` would leave its namespaces and nginx processes behind);
    /// SIGKILL if it has not exited after 20 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `lab serve` sends IPv6 requests (a target given as an IPv6 address): the client leaves from
/// its IPv6 address and nginx logs the master's (issue 10).
#[test]
fn api_sends_ipv6_requests() {
    let srv = Server::start("seed-cluster-v6");
    let send = json!({"client": "browser", "target": "fd00:10:151:30::11", "connectTimeout": 2});
    let (st, out) = srv.json("POST", "/api/requests", Some(send));
    assert_eq!(st, 200, "{out}");
    let r = &out["requests"][0];
    assert_eq!(r["outcome"], "ok", "{r}");
    assert_eq!(r["client_ip"], "2001:db8::11");
    assert_eq!(r["logged_client_ip"], "fd00:10:151:30::11");
}

#[test]
fn api_walks_the_blog_and_validates_input() {
    let srv = Server::start("seed-cluster");
    let (st, state) = srv.json("GET", "/api/state", None);
    assert_eq!(st, 200);
    assert_eq!(state["scenario"], "seed-cluster");
    assert_eq!(state["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(state["clients"][0]["name"], "browser");
    let svc = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nginx")
        .expect("nginx service");
    assert_eq!(svc["external_traffic_policy"], "Cluster");
    assert_eq!(svc["replicas"], 3);

    let send = json!({"client": "browser", "target": "ydzs-master", "connectTimeout": 2});
    let (st, out) = srv.json("POST", "/api/requests", Some(send.clone()));
    assert_eq!(st, 200, "{out}");
    let r = &out["requests"][0];
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["logged_client_ip"], "10.151.30.11");
    let expl = r["explanation"].as_str().unwrap();
    assert!(
        expl.contains("no local endpoint") && expl.contains("MASQUERADE"),
        "{expl}"
    );
    let tags: Vec<&str> = r["hops"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["tag"].as_str())
        .collect();
    assert!(
        tags.contains(&"DNAT") && tags.contains(&"SNAT (MASQUERADE)"),
        "{tags:?}"
    );
    let (st, ct) = srv.json("GET", "/api/conntrack/ydzs-master", None);
    assert_eq!(st, 200);
    assert!(
        ct["entries"][0]
            .as_str()
            .unwrap()
            .contains("src=203.0.113.11"),
        "{ct}"
    );
    let (st, svg) = srv.http("GET", "/api/requests/1/diagram.svg", None);
    assert_eq!(st, 200);
    assert!(svg.contains("<svg") && svg.contains("DNAT"));

    let (st, _) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"externalTrafficPolicy": "Local"})),
    );
    assert_eq!(st, 200);
    let (_, out) = srv.json("POST", "/api/requests", Some(send.clone()));
    let r = &out["requests"][0];
    assert_eq!(r["outcome"], "timeout");
    assert_eq!(r["elapsed_ms"], 2000);
    assert!(r["explanation"]
        .as_str()
        .unwrap()
        .contains("externalTrafficPolicy: Local"));

    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"nodeName": "ydzs-master"})),
    );
    assert_eq!(st, 200);
    assert!(state["pods"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["node"] == "ydzs-master"));
    let (_, out) = srv.json("POST", "/api/requests", Some(send));
    assert_eq!(out["requests"][0]["logged_client_ip"], "203.0.113.11");

    // Unpin and scale: back on the workers.
    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"nodeName": null, "replicas": 2, "sessionAffinity": "ClientIP"})),
    );
    assert_eq!(st, 200, "{state}");
    let pods = state["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p["node"] != "ydzs-master"));

    // A node the browser cannot reach: the router's drop, in words.
    let (_, out) = srv.json(
        "POST",
        "/api/requests",
        Some(json!({"client": "browser", "target": "ydzs-node1", "connectTimeout": 1})),
    );
    let e = out["requests"][0]["explanation"].as_str().unwrap();
    assert!(e.starts_with("The router drops the SYN"), "{e}");

    // Bad input: 4xx JSON naming the field, never a crash.
    let bad: [(&str, &str, Option<&str>, u16, &str); 10] = [
        (
            "POST",
            "/api/requests",
            Some(r#"{"client":"nobody","target":"ydzs-master"}"#),
            404,
            "client",
        ),
        (
            "POST",
            "/api/requests",
            Some(r#"{"client":"browser","target":"mars"}"#),
            404,
            "target",
        ),
        (
            "POST",
            "/api/requests",
            Some(r#"{"client":"browser","target":"ydzs-master","service":"x/y"}"#),
            404,
            "service",
        ),
        (
            "POST",
            "/api/requests",
            Some(r#"{"client":"browser","target":"ydzs-master","count":0}"#),
            400,
            "count",
        ),
        (
            "POST",
            "/api/requests",
            Some(r#"{"client":"browser","target":"ydzs-master","connectTimeout":-1}"#),
            400,
            "connectTimeout",
        ),
        ("POST", "/api/requests", Some("not json"), 400, "body"),
        (
            "PATCH",
            "/api/services/default/nope",
            Some(r#"{"replicas":1}"#),
            404,
            "service",
        ),
        (
            "PATCH",
            "/api/services/default/nginx",
            Some(r#"{"externalTrafficPolicy":"Sometimes"}"#),
            400,
            "externalTrafficPolicy",
        ),
        (
            "PATCH",
            "/api/services/default/nginx",
            Some(r#"{"nodeName":"mars"}"#),
            404,
            "nodeName",
        ),
        ("GET", "/api/conntrack/mars", None, 404, "node"),
    ];
    for (method, path, body, status, field) in bad {
        let (st, text) = srv.http(method, path, body);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        assert_eq!(
            (st, v["field"].as_str()),
            (status, Some(field)),
            "{method} {path} {body:?}: {v}"
        );
    }
    // Still alive and consistent.
    let (st, state) = srv.json("GET", "/api/state", None);
    assert_eq!(st, 200);
    assert_eq!(state["pods"].as_array().unwrap().len(), 2);
}

#[test]
fn plan_shares_and_rules() {
    let srv = Server::start("local-imbalance");
    let (st, out) = srv.json("POST", "/api/plan", None);
    assert_eq!(st, 200, "{out}");
    let shares: f64 = out["per_pod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-6, "{out}");
    let node = out["nodes"][0]["name"].as_str().unwrap().to_string();
    let (st, rules) = srv.http("GET", &format!("/api/rules/{node}"), None);
    assert_eq!(st, 200);
    assert!(rules.contains("KUBE-SERVICES"), "{rules}");
    let (st, page) = srv.http("GET", "/", None);
    assert_eq!(st, 200);
    assert!(page.contains("<svg id=\"topo\""));
    // The SVG namespace name is an identifier, not a resource.
    let page = page.replace("http://www.w3.org/2000/svg", "");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "external URL in the page"
    );
}

/// `CI=true`: a missing tool is a failure, else a printed skip.
fn skip_or_fail(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {reason}");
    }
    eprintln!("skipped: {reason}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The browser test's prerequisites: playwright-core's directory, or why it cannot run.
fn browser_tools() -> Result<PathBuf, String> {
    let pw = repo().join("target/serve-e2e/node_modules/playwright-core");
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("/usr/bin/chromium is missing (apt-get install chromium)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is missing".into());
    }
    if !pw.join("package.json").is_file() {
        return Err("playwright-core is missing (npm install --prefix target/serve-e2e playwright-core@1.48.2)".into());
    }
    Ok(pw)
}

/// Walks `srv`'s page with walk.cjs (`steps` of the blog; `real` names the screenshots
/// real-… and records the countdown); the driver's JSON, checked for console errors and
/// external requests.
fn walk(srv: &Server, pw: &Path, shots: &Path, steps: usize, real: bool) -> Value {
    std::fs::create_dir_all(shots).unwrap();
    // One profile per walk: the two browser tests run in parallel.
    let user_data = repo().join(format!(
        "target/serve-e2e/profile-{}-{}",
        std::process::id(),
        if real { "real" } else { "embedded" }
    ));
    let _ = std::fs::remove_dir_all(&user_data);
    let url = format!("http://{}/", srv.addr);
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/walk.cjs"))
        .arg(pw)
        .arg(&url)
        .arg(shots)
        .arg(&user_data)
        .arg(steps.to_string())
        .arg(if real { "real" } else { "embedded" })
        .output()
        .expect("run node");
    let _ = std::fs::remove_dir_all(&user_data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "driver failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("driver JSON");
    assert_eq!(v["console_errors"], json!([]), "console errors: {v}");
    assert_eq!(
        v["external_requests"],
        json!([]),
        "non-127.0.0.1 requests: {v}"
    );
    v
}

/// The blog's three steps as the page shows them, in either mode; also the pcap button,
/// the hop trails along the drawn links and the badges on the topology.
fn check_steps(v: &Value) {
    let step = |i: usize| &v["steps"][i];
    // 1. Cluster: nginx logs the master's address.
    assert!(
        step(0)["log"]
            .as_str()
            .unwrap()
            .contains(": 10.151.30.11 - -"),
        "{v}"
    );
    assert_eq!(step(0)["row"][3], "ok 200");
    assert_eq!(step(0)["row"][5], "10.151.30.11");
    // Every hop ran along the links: browser-router, router-bus-node, node-bus-node,
    // node-lane-pod and back (8 trails; one from the master to node X crosses the bus).
    let trails = step(0)["trails"].as_array().unwrap();
    assert_eq!(trails.len(), 8, "{v}");
    assert!(trails.iter().any(|n| n.as_u64().unwrap() >= 4), "{v}");
    let badges = &step(0)["topo_badges"];
    for b in ["DNAT", "SNAT (MASQUERADE)", "un-SNAT", "un-DNAT"] {
        assert!(badges.as_array().unwrap().contains(&json!(b)), "{b}: {v}");
    }
    // The pcap button of the master's eth0 downloads a pcap file.
    assert_eq!(v["pcap"]["name"], "ydzs-master-eth0.pcap", "{v}");
    assert!(
        ["a1b2c3d4", "d4c3b2a1"].contains(&v["pcap"]["magic"].as_str().unwrap()),
        "{v}"
    );
    // 2. Local: timeout after the 2 s connect timeout, dropped on the master.
    assert_eq!(step(1)["row"][3], "timeout");
    assert!(
        step(1)["hops"].as_array().unwrap().contains(&json!("DROP")),
        "{v}"
    );
    assert!(
        step(1)["topo_badges"]
            .as_array()
            .unwrap()
            .contains(&json!("DROP")),
        "{v}"
    );
    // 3. Pinned to the master: the browser's own address.
    assert!(
        step(2)["log"]
            .as_str()
            .unwrap()
            .contains(": 203.0.113.11 - -"),
        "{v}"
    );
    assert_eq!(step(2)["row"][5], "203.0.113.11");
}

#[test]
fn browser_walks_the_three_steps() {
    let pw = match browser_tools() {
        Ok(p) => p,
        Err(e) => return skip_or_fail(&e),
    };
    let shots = repo().join("target/serve-e2e/shots");
    let srv = Server::start("seed-cluster");
    let v = walk(&srv, &pw, &shots, 3, false);
    drop(srv);
    check_steps(&v);
    let step = |i: usize| &v["steps"][i];
    // Embedded: the 2 s are virtual.
    assert_eq!(step(1)["row"][6], "2.0 s");
    for f in ["step1-cluster.png", "step2-local.png", "step3-pinned.png"] {
        assert!(
            shots.join(f).metadata().is_ok_and(|m| m.len() > 10_000),
            "{f}"
        );
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Namespaces and processes whose names start with `nplab-`, and /run/nplab's contents.
fn nplab_leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&ns.stdout).lines() {
        if l.starts_with("nplab-") {
            left.push(format!("netns {l}"));
        }
    }
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    for l in String::from_utf8_lossy(&links.stdout).lines() {
        if l.contains("nplab-") {
            left.push(format!("link {l}"));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with("nplab-") {
                left.push(format!("/run/netns/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    // The lab's nginx processes run from its state dir.
    let ps = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&ps.stdout).lines() {
        if l.contains("/run/nplab") {
            left.push(format!("process {l}"));
        }
    }
    left
}

/// `lab serve --real` (root; run the suite under `flock /tmp/nplab-real.lock`, as every
/// real-mode test): the page walks the blog's three steps on the real lab (real curl in the
/// browser's namespace, real nginx logs; the pin starts three pod namespaces on the master
/// and deletes the old ones), and SIGTERM stops the server and tears the lab down: nothing
/// named nplab- is left.
#[test]
fn browser_walks_the_three_steps_on_the_real_lab_and_sigterm_tears_it_down() {
    let pw = match browser_tools() {
        Ok(p) => p,
        Err(e) => return skip_or_fail(&e),
    };
    if !is_root() || !Path::new("/dev/net/tun").exists() {
        return skip_or_fail("lab serve --real needs root and /dev/net/tun");
    }
    let before = nplab_leftovers();
    if !before.is_empty() {
        return skip_or_fail(&format!("a real lab is running here: {before:?}"));
    }
    let mut srv = Server::start_with(&["seed-cluster", "--real"]);
    let (st, state) = srv.json("GET", "/api/state", None);
    assert_eq!((st, state["mode"].clone()), (200, json!("real")), "{state}");
    let first_pods: Vec<String> = state["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let shots = repo().join("target/serve-e2e/shots");
    let v = walk(&srv, &pw, &shots, 3, true);
    check_steps(&v);
    let step = |i: usize| &v["steps"][i];
    // Real seconds: curl's own give-up after the 2 s connect timeout, counted down.
    let elapsed: f64 = step(1)["row"][6]
        .as_str()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!((1.9..3.5).contains(&elapsed), "{v}");
    assert!(
        step(1)["countdown"]
            .as_str()
            .unwrap()
            .contains("curl gives up connecting in"),
        "{v}"
    );
    // 3. Pinned: new pod namespaces on the master answered (see check_steps).
    let (_, state) = srv.json("GET", "/api/state", None);
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for p in state["pods"].as_array().unwrap() {
        assert_eq!(p["node"], "ydzs-master", "{state}");
        let name = p["name"].as_str().unwrap();
        assert!(!first_pods.contains(&name.to_string()), "{state}");
        assert!(netns.contains(&format!("nplab-pod-{name}")), "{netns}");
    }
    for old in &first_pods {
        assert!(
            !netns.contains(&format!("nplab-pod-{old}")),
            "{old} left: {netns}"
        );
    }
    let (_, conn) = srv.json("GET", "/api/conntrack/ydzs-master", None);
    assert!(
        conn["entries"].to_string().contains("src=203.0.113.11"),
        "{conn}"
    );

    // SIGTERM: the server stops and the lab goes.
    let (status, rest) = srv.stop_with(libc::SIGTERM, 20);
    assert!(status.success(), "{status}: {rest}");
    assert!(
        rest.contains("tearing the lab down") && rest.contains("removed 4 namespaces"),
        "{rest:?}"
    );
    assert_eq!(nplab_leftovers(), Vec::<String>::new());
}

/// Reads from `s` until `needle` shows up (or 10 s pass); everything read.
fn read_until(s: &mut TcpStream, needle: &str) -> String {
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn events_stream_and_ctrl_c_stops_cleanly() {
    let mut srv = Server::start("seed-cluster");
    let mut sse = TcpStream::connect(&srv.addr).unwrap();
    write!(
        sse,
        "GET /api/events HTTP/1.1\r\nHost: {}\r\n\r\n",
        srv.addr
    )
    .unwrap();
    let head = read_until(&mut sse, "\r\n\r\n");
    assert!(head.contains("text/event-stream"), "{head}");
    let (st, _) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"replicas": 1})),
    );
    assert_eq!(st, 200);
    let (st, _) = srv.json(
        "POST",
        "/api/requests",
        Some(json!({"client": "browser", "target": "ydzs-master"})),
    );
    assert_eq!(st, 200);
    let events = read_until(&mut sse, r#""type":"request""#);
    for t in ["sync", "hop", "log", "request"] {
        assert!(
            events.contains(&format!(r#""type":"{t}""#)),
            "{t}: {events}"
        );
    }
    // SIGINT (Ctrl-C) with the event stream still open: the server says so and exits 0.
    let (status, rest) = srv.stop_with(libc::SIGINT, 10);
    assert!(status.success(), "{status}");
    assert!(rest.contains("stopped"), "{rest:?}");
}

#[test]
fn patch_keeps_conntrack_logs_and_history() {
    let srv = Server::start("seed-cluster");
    let send = json!({"client": "browser", "target": "ydzs-master", "connectTimeout": 2});
    let (st, out) = srv.json("POST", "/api/requests", Some(send.clone()));
    assert_eq!(st, 200, "{out}");
    let first = out["requests"][0].clone();
    let pod = first["pod"].as_str().unwrap().to_string();
    let (_, before) = srv.json("GET", "/api/conntrack/ydzs-master", None);
    let entry = before["entries"][0].as_str().unwrap().to_string();
    assert!(entry.contains("src=203.0.113.11"), "{before}");

    // A policy change is a kube-proxy sync: the same pods, the entry, the log line and the
    // request history are still there, and the world was not rebuilt.
    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"externalTrafficPolicy": "Local"})),
    );
    assert_eq!(st, 200, "{state}");
    assert_eq!(state["reset"], false);
    assert!(state["pods"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == pod.as_str()));
    let (_, after) = srv.json("GET", "/api/conntrack/ydzs-master", None);
    assert!(
        after["entries"].as_array().unwrap().contains(&json!(entry)),
        "conntrack lost: {after}"
    );
    let logs = &state["access_logs"][pod.as_str()];
    assert_eq!(logs.as_array().map(Vec::len), Some(1), "{state}");
    assert_eq!(logs[0], first["log_line"]);

    // Scale 3 -> 2 -> 3: one pod deleted, then one started; the others keep their logs.
    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"externalTrafficPolicy": "Cluster", "replicas": 2})),
    );
    assert_eq!((st, state["reset"].clone()), (200, json!(false)), "{state}");
    assert_eq!(state["pods"].as_array().unwrap().len(), 2);
    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"replicas": 3})),
    );
    assert_eq!((st, state["reset"].clone()), (200, json!(false)), "{state}");
    assert_eq!(state["pods"].as_array().unwrap().len(), 3);
    assert_eq!(
        state["access_logs"][pod.as_str()].as_array().map(Vec::len),
        Some(1)
    );
    for _ in 0..6 {
        let (st, out) = srv.json("POST", "/api/requests", Some(send.clone()));
        assert_eq!(
            (st, out["requests"][0]["outcome"].clone()),
            (200, json!("ok")),
            "{out}"
        );
    }
    let (_, all) = srv.json("GET", "/api/requests", None);
    let numbers: Vec<u64> = all["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=7).collect::<Vec<_>>());
    // The pod that came back serves again.
    let (_, state) = srv.json("GET", "/api/state", None);
    let served: usize = state["access_logs"]
        .as_object()
        .unwrap()
        .values()
        .map(|l| l.as_array().map(Vec::len).unwrap_or(0))
        .sum();
    assert_eq!(served, 7, "{state}");
}

#[test]
fn pcap_of_a_link_downloads_and_tcpdump_reads_it() {
    let srv = Server::start("seed-cluster");
    let (_, out) = srv.json(
        "POST",
        "/api/requests",
        Some(json!({"client": "browser", "target": "ydzs-master"})),
    );
    assert_eq!(out["requests"][0]["outcome"], "ok");
    let (_, state) = srv.json("GET", "/api/state", None);
    let links: Vec<&str> = state["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for l in [
        "ydzs-master-eth0",
        "browser",
        "router-clients-203.0.113.0-24",
    ] {
        assert!(links.contains(&l), "{l} not in {links:?}");
    }
    let eth0 = &state["links"][0];
    assert_eq!(eth0["name"], "ydzs-master-eth0");
    assert!(eth0["packets"].as_u64().unwrap() >= 10, "{eth0}");

    // Raw bytes: the HTTP helper above is text-only.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    write!(
        s,
        "GET /api/pcap/ydzs-master-eth0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/vnd.tcpdump.pcap"),
        "{head}"
    );
    let body = &raw[at..];
    // Classic pcap with microsecond timestamps, in either byte order.
    let magic = &body[..4];
    assert!(
        magic == [0xa1, 0xb2, 0xc3, 0xd4] || magic == [0xd4, 0xc3, 0xb2, 0xa1],
        "not a pcap file: {magic:02x?}"
    );
    let file = std::env::temp_dir().join(format!("nplab-serve-{}.pcap", std::process::id()));
    std::fs::write(&file, body).unwrap();
    let td = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let td = match td {
        Ok(o) => o,
        Err(e) => return skip_or_fail(&format!("tcpdump is missing ({e})")),
    };
    let text = String::from_utf8_lossy(&td.stdout);
    assert!(
        td.status.success(),
        "{}",
        String::from_utf8_lossy(&td.stderr)
    );
    // The browser's SYN to the NodePort, then the MASQUERADEd one towards a pod.
    assert!(text.contains("IP 203.0.113.11."), "{text}");
    assert!(
        text.contains("IP 10.151.30.11.") && text.contains(" > 10.244."),
        "{text}"
    );

    let (st, err) = srv.json("GET", "/api/pcap/mars", None);
    assert_eq!((st, err["field"].clone()), (404, json!("link")));
}

/// A pod client's address follows the Deployment pods of its node: pinning the pods to that
/// node readdresses it, which the running world cannot do in place, so the embedded lab is
/// rebuilt and the answer says so.
#[test]
fn patch_that_moves_a_pod_client_rebuilds_and_says_so() {
    // pod-to-nodeport without its lab/web nodeSelector, so the pods may go to node1.
    let text = std::fs::read_to_string(repo().join("lab-configs/pod-to-nodeport.yaml")).unwrap();
    let selector = "          nodeSelector:\n            lab/web: \"yes\"      # node2 and node3: one replica each\n";
    assert!(
        text.contains(selector),
        "the scenario changed: update this test"
    );
    let free = text.replace(selector, "");
    let file = std::env::temp_dir().join(format!(
        "nplab-serve-pod-client-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&file, free).unwrap();
    let srv = Server::start(file.to_str().unwrap());
    let _ = std::fs::remove_file(&file);
    let (_, state) = srv.json("GET", "/api/state", None);
    let ip_before = state["clients"][0]["ip"].clone();
    let (st, state) = srv.json(
        "PATCH",
        "/api/services/default/nginx",
        Some(json!({"nodeName": "ydzs-node1"})),
    );
    assert_eq!(st, 200, "{state}");
    assert_eq!(state["reset"], true, "{state}");
    assert_ne!(state["clients"][0]["ip"], ip_before, "{state}");
    // The rebuilt lab answers, with its captures restarted.
    let (st, out) = srv.json(
        "POST",
        "/api/requests",
        Some(json!({"client": "client", "target": "ydzs-node1", "connectTimeout": 1})),
    );
    assert_eq!(
        (st, out["requests"][0]["outcome"].clone()),
        (200, json!("ok")),
        "{out}"
    );
    let (_, state) = srv.json("GET", "/api/state", None);
    assert!(state["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["packets"].as_u64() > Some(0)));
}
