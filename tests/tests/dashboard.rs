//! The dashboard end to end: a small `flic simulate --state`, its saved canister served by
//! `flic dashboard`'s server, loaded in a real headless Chromium; and the HTTP API through
//! the canister's release wasm.
//!
//! The browser test needs Debian's `chromium`. When it is missing and the test runs as root
//! with `apt-get` (a fresh Debian machine or container, CI), it installs the package itself,
//! so the README's test command passes as written; otherwise it fails and says how to
//! install it. `FLIC_SKIP_BROWSER_TEST=1` skips it explicitly.
//! `FLIC_UPDATE_SCREENSHOT=1` writes `docs/dashboard.png` and `docs/dashboard-phone.png`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candid::Principal;
use flic_client::api::AggregatorApi;
use flic_client::output::Silent;
use flic_client::simulate::{run, SimulationConfig, SimulationReport};
use flic_client::transport::embedded::{self, EmbeddedTransport};
use flic_devnet::server;
use flic_devnet::{Devnet, DevnetConfig};
use flic_embedded_ic::EmbeddedIc;
use flic_protocol::api::{EvaluationError, HttpRequest, HttpResponse, ReportEvaluationArgs};
use flic_protocol::Hash;

fn simulate(dir: &Path) -> SimulationReport {
    let args = SimulationConfig {
        clients: Some(3),
        rounds: 4,
        model: "mlp".into(),
        hidden: vec![16],
        samples: 1200,
        seed: 11,
        state: Some(dir.to_path_buf()),
        ..SimulationConfig::default()
    };
    run(&args, &mut Silent).expect("simulation runs")
}

/// A running `flic dashboard` server (the devnet's gateway with the saved canister at `/`)
/// on an ephemeral loopback port.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    fn start(state: &Path) -> Self {
        let ic = EmbeddedIc::load(state).expect("saved state loads");
        let config = DevnetConfig {
            default_canister: Some(ic.canister_ids()[0]),
            ..DevnetConfig::default()
        };
        let devnet = Arc::new(Mutex::new(Devnet::from_ic(
            ic,
            config,
            server::wall_clock_ns(),
        )));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = server::bind("127.0.0.1:0".parse().unwrap()).await?;
                tx.send(listener.local_addr()?).unwrap();
                let log: server::Logger = Arc::new(|_, _| {});
                server::serve(devnet, listener, log, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        Self {
            addr: rx.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server and checks it returned cleanly within a few seconds.
    fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let started = Instant::now();
        let thread = self.thread.take().unwrap();
        while !thread.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "server did not stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().unwrap().expect("server returned Ok");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A minimal HTTP/1.1 client: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLIC_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Installs Debian's `chromium` when this process may (root, `apt-get` on the PATH).
fn install_chromium() -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("not root, so it cannot install packages".into());
    }
    eprintln!("no Chromium found: installing Debian's `chromium` (apt-get install chromium)");
    let status = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
        ])
        .status()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("apt-get install chromium failed ({status})"))
    }
}

/// Runs headless Chromium with a fresh profile; returns stdout. Killed after 90 s.
fn run_chromium(bin: &Path, profile: &Path, extra: &[String], url: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            child.kill().unwrap();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "chromium failed: {status}\n{stderr}");
    reader.join().unwrap()
}

/// The HTML of `<tr data-round="r">` … `</tr>` in `dom`.
fn table_row<'a>(dom: &'a str, round: u64) -> &'a str {
    let start = dom
        .find(&format!("<tr data-round=\"{round}\">"))
        .unwrap_or_else(|| panic!("no history row for round {round}"));
    let len = dom[start..].find("</tr>").expect("row ends");
    &dom[start..start + len]
}

#[test]
fn dashboard_in_chromium_shows_the_simulated_rounds() {
    if std::env::var_os("FLIC_SKIP_BROWSER_TEST").is_some() {
        eprintln!("skipped: FLIC_SKIP_BROWSER_TEST is set");
        return;
    }
    let bin = chromium()
        .or_else(|| match install_chromium() {
            Ok(()) => chromium(),
            Err(why) => {
                eprintln!("cannot install Chromium: {why}");
                None
            }
        })
        .expect(
            "no Chromium found: install Debian's `chromium` (apt-get install chromium), \
             point FLIC_CHROMIUM at a Chromium binary, or set FLIC_SKIP_BROWSER_TEST=1 to skip",
        );
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let report = simulate(&state);
    let server = Server::start(&state);

    let dom = run_chromium(
        &bin,
        &tmp.path().join("profile-dom"),
        &["--dump-dom".into(), "--virtual-time-budget=3000".into()],
        &server.url("/"),
    );
    // The inline script ran in the browser (and the CSP let it).
    assert!(
        dom.contains("data-js=\"ok\""),
        "the page script did not run:\n{}",
        &dom[..dom.len().min(600)]
    );
    // The deadline countdown is there (the script keeps it ticking).
    assert!(dom.contains("class=\"countdown\">in "), "countdown");
    // The job's encodings, each with its bytes per parameter.
    assert!(
        dom.contains("f32 (4.000 B/param), int8 blocks (1.016 B/param)"),
        "the allowed encodings"
    );
    // Every simulated round: a table row with its accuracy, a bar, a point on the chart.
    // The report counts rounds from 1; the canister's round r produced report round r + 1.
    for r in &report.rounds {
        let round = r.round - 1;
        let accuracy = format!("{:.2}%", r.test_accuracy * 100.0);
        let row = table_row(&dom, round);
        assert!(
            row.contains(&accuracy),
            "round {round}'s row lacks accuracy {accuracy}: {row}"
        );
        assert!(row.contains(&r.model_version[..12]), "{row}");
        assert!(
            dom.contains(&format!(
                "data-round=\"{round}\" data-value=\"{}\"",
                r.contributors
            )),
            "participation bar of round {round}"
        );
        assert!(
            dom.contains(&format!(
                "data-round=\"{round}\" data-accuracy=\"{:.4}\"",
                r.test_accuracy
            )),
            "quality point of round {round}"
        );
    }
    assert_eq!(dom.matches("<tr data-round=").count(), report.rounds.len());
    // Lineage of the current model: the three simulated datasets.
    assert_eq!(dom.matches("<tr data-dataset=").count(), 3);
    for i in 0..3 {
        assert!(dom.contains(&format!("client-{i}")), "dataset client-{i}");
    }

    // Screenshots: desktop and phone widths. Kept under docs/ on request.
    for (name, size) in [
        ("dashboard.png", "1200,1120"),
        ("dashboard-phone.png", "390,1500"),
    ] {
        let path = tmp.path().join(name);
        run_chromium(
            &bin,
            &tmp.path().join(format!("profile-{name}")),
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={size}"),
                "--virtual-time-budget=3000".into(),
            ],
            &server.url("/"),
        );
        let png = std::fs::read(&path).expect("screenshot written");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name} is a PNG");
        assert!(png.len() > 20_000, "{name} is only {} bytes", png.len());
        if std::env::var_os("FLIC_UPDATE_SCREENSHOT").is_some() {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
            std::fs::copy(&path, docs.join(name)).unwrap();
        }
    }

    // The JSON API and metrics over real HTTP.
    let (status, body) = http(server.addr, "GET", "/api/rounds?limit=1");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["next"], 1);
    assert_eq!(v["items"][0]["round"], 0);
    let (status, body) = http(server.addr, "GET", "/api/no-such-thing");
    assert_eq!(status, 404);
    assert!(body.contains("no such path"), "{body}");
    let (status, _) = http(server.addr, "GET", "/api/rounds?limit=0");
    assert_eq!(status, 400);
    let (status, _) = http(server.addr, "DELETE", "/api/rounds");
    assert_eq!(status, 405);
    let (status, body) = http(server.addr, "GET", "/metrics");
    assert_eq!(status, 200);
    let closed = report.rounds.len();
    assert!(
        body.lines()
            .any(|l| l == format!("flic_rounds_closed_total {closed}")),
        "{body}"
    );
    assert!(body.lines().any(|l| l == "flic_contributors 3"), "{body}");
    assert!(
        body.lines()
            .any(|l| l == format!("flic_submissions_accepted_total {}", 3 * closed)),
        "{body}"
    );

    // Concurrent requests are all answered.
    let addr = server.addr;
    let threads: Vec<_> = (0..12)
        .map(|i| std::thread::spawn(move || http(addr, "GET", &format!("/api/rounds/{}", i % 4)).0))
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    server.shutdown();
}

fn http_request(ic: &mut EmbeddedIc, canister: Principal, url: &str) -> HttpResponse {
    let req = HttpRequest {
        method: "GET".into(),
        url: url.into(),
        headers: vec![],
        body: Default::default(),
        certificate_version: Some(2),
    };
    let out = ic
        .query(
            canister,
            Principal::anonymous(),
            "http_request",
            candid::encode_one(&req).unwrap(),
        )
        .expect("http_request answers");
    candid::decode_one(&out.reply).unwrap()
}

/// Through the release wasm: paging caps, 404s, and rejection counters that survive the
/// upgrade path (save and load run pre- and post-upgrade).
#[test]
fn http_api_through_the_wasm_and_metrics_survive_upgrades() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let report = simulate(&state);
    let mut ic = EmbeddedIc::load(&state).unwrap();
    let canister = ic.canister_ids()[0];

    let r = http_request(&mut ic, canister, "/api/rounds?limit=5000");
    assert_eq!(r.status_code, 200);
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(body.contains("\"limit\": 100"), "{body}");
    assert_eq!(body.matches("\"new_version\"").count(), report.rounds.len());
    let r = http_request(&mut ic, canister, "/api/rounds/999");
    assert_eq!(r.status_code, 404);
    assert!(String::from_utf8(r.body.to_vec())
        .unwrap()
        .contains("not closed yet"));

    // A rejected report is counted; the count survives save + load (an upgrade).
    let shared = embedded::share(ic);
    let outsider = Principal::self_authenticating([7u8; 32]);
    let mut api = AggregatorApi::new(EmbeddedTransport::new(shared.clone(), canister, outsider));
    let err = api
        .report_evaluation(&ReportEvaluationArgs {
            round: 0,
            model_version: Hash::new([0; 32]),
            accuracy: 0.5,
            loss: 1.0,
            samples: 10,
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            flic_client::api::ApiError::Evaluation(EvaluationError::NotAllowed { .. })
        ),
        "{err}"
    );
    let evaluations = api.round_evaluations(0).unwrap();
    assert_eq!(evaluations.len(), 1, "the simulation's own report");
    assert!((evaluations[0].accuracy - report.rounds[0].test_accuracy).abs() < 1e-12);
    let saved = tmp.path().join("state2");
    embedded::lock(&shared).save(&saved).unwrap();
    let mut ic = EmbeddedIc::load(&saved).unwrap();
    let metrics = http_request(&mut ic, canister, "/metrics");
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        text.lines()
            .any(|l| l
                == "flic_rejections_total{method=\"report_evaluation\",reason=\"NotAllowed\"} 1"),
        "{text}"
    );
    let instructions: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("flic_instructions_total{method=\"commit_submission\"} "))
        .expect("commit instructions")
        .parse()
        .unwrap();
    assert!(instructions > 0);
    let chunk_bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("flic_bytes_received_total{outcome=\"accepted\"} "))
        .expect("bytes received")
        .parse()
        .unwrap();
    let uploaded: u64 = report.rounds.iter().map(|r| r.upload_bytes).sum();
    assert_eq!(chunk_bytes, uploaded);
}
