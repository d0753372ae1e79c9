//! DFINITY's `icp` CLI (npm `@icp-sdk/icp-cli-linux-x64`) against `flic devnet`: a
//! developer's own tooling can create a canister, install the aggregator (a chunked install:
//! the wasm is over 2 MiB), query it and call it, and flic then sees that canister.
//!
//! The test needs the `icp` binary: `$FLIC_ICP_BIN`, else `icp` on PATH. Without one it says
//! why and passes, unless `FLIC_REQUIRE_ICP=1` (set by .ci/run), when it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::json;

/// The aggregator's install argument: no job yet.
const INIT_ARG: &str = "(variant { Init = record { job = null } })";
/// The aggregator's interface: the wasm has no `candid:service` metadata, so icp needs the
/// .did to encode arguments and to print replies with field names instead of hashes.
const DID: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../aggregator-canister/aggregator.did"
);

fn flic(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flic"))
        .args(args)
        .env("FLIC_HOME", home)
        .env_remove("FLIC_IDENTITY")
        .env_remove("FLIC_NETWORK")
        .env_remove("FLIC_CANISTER")
        .stdin(Stdio::null())
        .output()
        .expect("run flic")
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json(what: &str, out: &Output) -> serde_json::Value {
    let stdout = ok(what, out);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON ({e}):\n{stdout}"))
}

/// The icp binary, or why there is none. `--version` is checked so that an unrelated `icp`
/// on PATH is not mistaken for DFINITY's.
fn find_icp() -> Result<PathBuf, String> {
    let bin = match std::env::var_os("FLIC_ICP_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("icp"))
            .find(|p| p.is_file())
            .ok_or(
                "FLIC_ICP_BIN is not set and there is no `icp` on PATH \
                    (npm install @icp-sdk/icp-cli-linux-x64; see .ci/run)",
            )?,
    };
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() && out.stdout.starts_with(b"icp ") => Ok(bin),
        other => Err(format!("{} --version: {other:?}", bin.display())),
    }
}

/// `flic devnet` as a child process, killed when the test ends (also when it panics).
struct Devnet {
    child: Child,
    // Kept open so the devnet never writes into a closed pipe.
    _stdout: ChildStdout,
    url: String,
    root_key: String,
}

impl Devnet {
    fn start(flic_home: &Path) -> Devnet {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flic"))
            .args("devnet --listen 127.0.0.1:0 --json --no-request-log".split(' '))
            .env("FLIC_HOME", flic_home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flic devnet");
        let mut stdout = child.stdout.take().unwrap();
        // Once it listens the devnet prints one (pretty-printed) JSON object: read exactly
        // that value, not up to EOF. If the devnet dies first, stdout ends and this fails.
        let started: serde_json::Value = serde_json::Deserializer::from_reader(&mut stdout)
            .into_iter::<serde_json::Value>()
            .next()
            .expect("flic devnet exited before printing its URL")
            .expect("flic devnet printed JSON");
        let field = |k: &str| {
            started[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k} in {started}"))
                .to_string()
        };
        Devnet {
            url: field("url"),
            root_key: field("root_key"),
            child,
            _stdout: stdout,
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// icp with its own home, so the test neither reads nor changes the user's identities.
struct Icp {
    bin: PathBuf,
    home: PathBuf,
}

impl Icp {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .env("ICP_HOME", &self.home)
            // Telemetry is on by default and would later be sent to DFINITY.
            .env("DO_NOT_TRACK", "1")
            .env("ICP_TELEMETRY_DISABLED", "1")
            .env_remove("ICP_NETWORK")
            .env_remove("ICP_ENVIRONMENT")
            .env_remove("ICP_PROJECT_ROOT")
            // No icp.yaml above this folder: icp runs without a project.
            .current_dir(&self.home)
            // A prompt with no terminal is an error, never a hang.
            .stdin(Stdio::null())
            .output()
            .expect("run icp")
    }

    /// `args` against the devnet as identity `flic`. The root key is pinned from the
    /// devnet's JSON (`-k fetch` also works, with a trust-on-first-use warning).
    fn on(&self, devnet: &Devnet, args: &[&str]) -> Output {
        let (url, key) = (devnet.url.as_str(), devnet.root_key.as_str());
        self.run(&[args, &["-n", url, "-k", key, "--identity", "flic"]].concat())
    }

    /// [`Icp::on`] with `--json`: the parsed stdout.
    fn json_on(&self, devnet: &Devnet, args: &[&str]) -> serde_json::Value {
        let out = self.on(devnet, &[args, &["--json"]].concat());
        json(&format!("icp {}", args.join(" ")), &out)
    }

    /// The Candid text of the aggregator's reply to `method ()`, as a query or an update
    /// (without `--query` icp sends an update, even for a method the .did marks `query`).
    fn call(&self, devnet: &Devnet, cid: &str, method: &str, query: bool) -> String {
        let mut args = vec!["canister", "call", cid, method, "()", "--candid", DID];
        args.extend(query.then_some("--query"));
        let reply = self.json_on(devnet, &args)["response_candid"].clone();
        reply.as_str().expect("response_candid").trim().to_string()
    }
}

#[test]
fn icp_cli_creates_installs_queries_and_calls_the_aggregator_on_the_devnet() {
    let bin = match find_icp() {
        Ok(bin) => bin,
        Err(why) if std::env::var("FLIC_REQUIRE_ICP").as_deref() == Ok("1") => {
            panic!("FLIC_REQUIRE_ICP=1, but {why}")
        }
        Err(why) => {
            eprintln!("skipping the icp CLI test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (flic_home, icp_home) = (dir.path().join("flic"), dir.path().join("icp"));
    std::fs::create_dir_all(&flic_home).unwrap();
    std::fs::create_dir_all(&icp_home).unwrap();
    let icp = Icp {
        home: icp_home,
        bin,
    };

    // One key for both tools: `flic keygen` writes a PKCS#8 Ed25519 PEM, which icp imports.
    // (icp's default keyring storage needs a desktop session; plaintext works anywhere.)
    let principal = ok("flic keygen", &flic(&["keygen"], &flic_home));
    let principal = principal.trim();
    let pem = flic_home.join("identity.pem");
    let pem = pem.to_str().unwrap();
    let import = ["identity", "import", "flic", "--from-pem", pem];
    let out = icp.run(&[&import[..], &["--storage", "plaintext"]].concat());
    ok("icp identity import", &out);
    let who = icp.run(&["identity", "principal", "--identity", "flic"]);
    assert_eq!(ok("icp identity principal", &who).trim(), principal);

    let devnet = Devnet::start(&flic_home);
    // The CMC's get_default_subnets, then the cycles ledger's create_canister.
    let created = icp.json_on(&devnet, &["canister", "create", "--detached"]);
    let cid = String::from(created["canister_id"].as_str().unwrap());

    // The module is over 2 MiB, so icp installs it in chunks (upload_chunk, install_chunked_code).
    let wasm = dir.path().join("aggregator.wasm");
    std::fs::write(&wasm, flic_aggregator_wasm::AGGREGATOR_WASM).unwrap();
    let wasm = wasm.to_str().unwrap();
    let install = [
        "canister", "install", &cid, "--yes", "--args", INIT_ARG, "--wasm", wasm,
    ];
    ok("icp canister install", &icp.on(&devnet, &install));

    let status = icp.json_on(&devnet, &["canister", "status", &cid]);
    assert_eq!(status["status"], "Running");
    let hash = format!("0x{}", flic_aggregator_wasm::module_hash_hex());
    assert_eq!(status["module_hash"], hash);
    assert_eq!(status["settings"]["controllers"], json!([principal]));

    // A query: the devnet's node signs it, icp checks it against the subnet's node keys.
    let reply = icp.call(&devnet, &cid, "round_info", true);
    assert!(reply.contains("variant { Unconfigured }"), "{reply}");
    assert!(reply.contains("round = 0 : nat64"), "{reply}");
    // An update (a certified reply): starting a job that was never configured is a harmless
    // typed Err, and proves the whole call path.
    let reply = icp.call(&devnet, &cid, "start_job", false);
    assert_eq!(reply, "(variant { Err = variant { NotConfigured } })");

    // flic reads the canister icp installed.
    let url = devnet.url.as_str();
    let status = ["status", "--json", "--network", url, "--canister", &cid];
    let seen = json("flic status", &flic(&status, &flic_home));
    assert_eq!(seen["canister"], cid.as_str());
    assert_eq!(seen["state"], "Unconfigured");
    assert_eq!(seen["round"], 0);
}
