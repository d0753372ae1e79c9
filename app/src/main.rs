//! `flic-app`: opens the desktop app's window.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use flic_app::worker::Target;
use flic_app::{Config, FlicApp, Page};

/// flic's desktop app: join a federation, register your data, train, and see what your
/// data built.
///
/// Exit status: 0 when the window closes normally (or the screenshot was written), 2 on an
/// error (no display, a bad flag, a screenshot that could not be written).
#[derive(Parser, Debug)]
#[command(name = "flic-app", version)]
struct Args {
    /// Identity PEM file, the one `flic keygen` writes [default: $FLIC_HOME/identity.pem
    /// or ~/.config/flic/identity.pem]; created on first start if you ask.
    #[arg(long, env = "FLIC_IDENTITY")]
    identity: Option<PathBuf>,
    /// Upload journal, residuals and receipts, as `flic train --work-dir` [default: `work`
    /// beside the identity].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Connect at start: `embedded` (with --state), `local`, `ic` or a gateway URL.
    #[arg(long, env = "FLIC_NETWORK")]
    network: Option<String>,
    /// The aggregator canister id.
    #[arg(long, env = "FLIC_CANISTER")]
    canister: Option<String>,
    /// A saved embedded IC (`flic simulate --state DIR`), for `--network embedded`.
    #[arg(long, env = "FLIC_STATE")]
    state: Option<PathBuf>,
    /// UI scale: 1.25 is 125 %.
    #[arg(long, default_value_t = 1.0)]
    scale: f32,
    /// Window size in points, WIDTHxHEIGHT.
    #[arg(long, default_value = "1100x760", value_parser = parse_size)]
    size: (f32, f32),
    /// Render the window once it has settled, write it to this PNG file and exit (for docs
    /// and CI).
    #[arg(long, value_name = "PNG")]
    screenshot: Option<PathBuf>,
    /// The page the screenshot shows.
    #[arg(
        long,
        value_enum,
        default_value = "federation",
        requires = "screenshot"
    )]
    page: PageArg,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum PageArg {
    Federation,
    Data,
    Contribute,
    Built,
}

fn parse_size(s: &str) -> Result<(f32, f32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("`{s}` is not WIDTHxHEIGHT"))?;
    let n = |v: &str| {
        v.parse::<f32>()
            .ok()
            .filter(|&v| v >= 200.0)
            .ok_or_else(|| format!("`{v}` is not a size of at least 200"))
    };
    Ok((n(w)?, n(h)?))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let identity_path = args
        .identity
        .unwrap_or_else(flic_client::identity::default_identity_path);
    let work_dir = args.work_dir.unwrap_or_else(|| {
        identity_path
            .parent()
            .map(|p| p.join("work"))
            .unwrap_or_else(flic_client::training::default_work_dir)
    });
    let connect = args.network.map(|network| Target {
        network,
        canister: args.canister,
        state: args.state,
    });
    let config = Config {
        identity_path,
        work_dir,
        connect,
        scale: args.scale,
    };
    let mut app = FlicApp::new(config);
    app.page = match args.page {
        PageArg::Federation => Page::Federation,
        PageArg::Data => Page::Data,
        PageArg::Contribute => Page::Contribute,
        PageArg::Built => Page::Built,
    };
    let written = Arc::new(Mutex::new(None));
    let shell = Shell {
        app,
        screenshot: args.screenshot.map(|path| Screenshot {
            path,
            frames_settled: 0,
            requested: false,
            written: written.clone(),
        }),
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("flic")
            .with_inner_size([args.size.0, args.size.1])
            .with_min_inner_size([480.0, 360.0]),
        ..Default::default()
    };
    eframe::run_native("flic", options, Box::new(|_cc| Ok(Box::new(shell))))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))?;
    let result = written.lock().expect("not poisoned").take();
    result.unwrap_or(Ok(()))
}

struct Shell {
    app: FlicApp,
    screenshot: Option<Screenshot>,
}

struct Screenshot {
    path: PathBuf,
    frames_settled: u32,
    requested: bool,
    written: Arc<Mutex<Option<anyhow::Result<()>>>>,
}

impl eframe::App for Shell {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let page = self.app.page;
        self.app.show(ui);
        let Some(shot) = &mut self.screenshot else {
            return;
        };
        // The app may move to the identity page first; keep the page asked for.
        self.app.page = page;
        let ctx = ui.ctx().clone();
        if shot.written.lock().expect("not poisoned").is_some() {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        // Settled: nothing in flight, and whatever was asked to connect has answered.
        let settled = self.app.busy == 0 && !self.app.connecting && self.app.phase.is_none();
        shot.frames_settled = if settled { shot.frames_settled + 1 } else { 0 };
        if shot.frames_settled >= 5 && !shot.requested {
            shot.requested = true;
            let (path, written, wake) = (shot.path.clone(), shot.written.clone(), ctx.clone());
            ctx.request_screenshot(move |image| {
                *written.lock().expect("not poisoned") = Some(write_png(&path, &image));
                wake.request_repaint();
            });
        }
        ctx.request_repaint();
    }
}

fn write_png(path: &std::path::Path, image: &egui::ColorImage) -> anyhow::Result<()> {
    use anyhow::Context;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let [w, h] = image.size;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
    writer.write_image_data(&bytes)?;
    writer.finish()?;
    eprintln!("wrote {} ({w}x{h})", path.display());
    Ok(())
}
