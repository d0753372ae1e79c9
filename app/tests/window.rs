//! The real window: `flic-app` opens it under Xvfb (an X server without a screen), renders
//! through eframe and wgpu on the software Vulkan driver, connects to a saved embedded IC,
//! and writes a screenshot of what it drew (`--screenshot`). CI installs `xvfb` and sets
//! `FLIC_REQUIRE_XVFB=1`, which turns a missing X server into a failure; elsewhere the test
//! skips without `Xvfb`, saying why. `FLIC_APP_SCREENSHOT_DIR` keeps the screenshots
//! (docs/app.md shows them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LAVAPIPE: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

struct Xvfb(Child, String);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Xvfb on a free display; `None` (skip) without it, unless CI requires it.
fn xvfb() -> Option<Xvfb> {
    let found = Command::new("Xvfb")
        .arg("-help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        let why = "Xvfb is not installed (Debian: xvfb)";
        if std::env::var("FLIC_REQUIRE_XVFB").as_deref() == Ok("1") {
            panic!("{why} (FLIC_REQUIRE_XVFB=1)");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    // A display number nobody uses: its lock file and socket are absent.
    let n = (90..200)
        .find(|n| {
            !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
        })
        .expect("a free X display");
    let display = format!(":{n}");
    let child = Command::new("Xvfb")
        .args([&display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting Xvfb");
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Xvfb did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Xvfb(child, display))
}

fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn the_real_window_renders_the_connected_app_under_xvfb() {
    let Some(x) = xvfb() else {
        return;
    };
    let home = common::seeded_home(42);
    let state = common::simulated_state(home.path());
    let identity = home.path().join("identity.pem");
    let keep = std::env::var_os("FLIC_APP_SCREENSHOT_DIR").map(PathBuf::from);
    for page in ["federation", "built"] {
        let shot = home.path().join(format!("window-{page}.png"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flic-app"));
        cmd.args(["--identity", identity.to_str().unwrap()])
            .args(["--network", "embedded", "--state", state.to_str().unwrap()])
            .args(["--page", page, "--screenshot", shot.to_str().unwrap()])
            .env("DISPLAY", &x.1)
            .env_remove("WAYLAND_DISPLAY");
        if std::env::var_os("VK_ICD_FILENAMES").is_none() && Path::new(LAVAPIPE).exists() {
            cmd.env("VK_ICD_FILENAMES", LAVAPIPE);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > Duration::from_secs(180) {
                let _ = child.kill();
                panic!("flic-app did not write its screenshot within 3 minutes");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(status.success(), "flic-app failed: {stderr}");
        assert!(stderr.contains("wrote "), "{stderr}");
        let (w, h, pixels) = read_png(&shot);
        // The default window is 1100x760 points at scale 1.
        assert_eq!((w, h), (1100, 760));
        // Not blank: the window drew text on its background.
        let distinct: std::collections::BTreeSet<&[u8]> = pixels.chunks(4).collect();
        assert!(distinct.len() > 50, "only {} colours", distinct.len());
        if let Some(dir) = &keep {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::copy(&shot, dir.join(shot.file_name().unwrap())).unwrap();
        }
    }
}
