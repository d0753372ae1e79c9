//! The app's state and screens. [`FlicApp::show`] draws one frame into any `egui::Ui`
//! (eframe's window, or `egui_kittest`'s headless harness); all slow work goes to the
//! [`Worker`] and comes back as events, applied in [`FlicApp::apply`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use egui::{Color32, RichText, Ui};
use flic_client::data::DataFormat;
use flic_client::output::{relative, short_hex};
use flic_model_zoo::backend::{Backend, BackendRequest};

use crate::failure::Failure;
use crate::worker::{
    CommitView, DataPreview, DataSource, Event, IdentityView, Overview, Request, Target,
    TrainOptions, Worker,
};

/// How the app starts: where its files are, and a federation to connect to at once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The identity file (the same file `flic keygen` writes).
    pub identity_path: PathBuf,
    /// The upload journal, residuals and receipts (as `flic train --work-dir`).
    pub work_dir: PathBuf,
    /// Connect to this federation once the identity is loaded.
    pub connect: Option<Target>,
    /// UI scale (1.25 reads as 125 %).
    pub scale: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Federation,
    Data,
    Contribute,
    Built,
}

impl Page {
    pub const ALL: [Page; 4] = [Page::Federation, Page::Data, Page::Contribute, Page::Built];
    pub fn title(self) -> &'static str {
        match self {
            Page::Federation => "Federation",
            Page::Data => "My data",
            Page::Contribute => "Contribute",
            Page::Built => "What my data built",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkChoice {
    /// A saved embedded IC (`flic simulate --state DIR`).
    Embedded,
    /// A local replica (`flic devnet`, dfx or icp).
    Local,
    /// The Internet Computer.
    Ic,
    /// Any other gateway URL.
    Url,
}

impl NetworkChoice {
    pub const ALL: [NetworkChoice; 4] = [
        NetworkChoice::Embedded,
        NetworkChoice::Local,
        NetworkChoice::Ic,
        NetworkChoice::Url,
    ];
    fn label(self) -> &'static str {
        match self {
            NetworkChoice::Embedded => "Saved embedded state",
            NetworkChoice::Local => "Local network",
            NetworkChoice::Ic => "Internet Computer",
            NetworkChoice::Url => "Gateway URL",
        }
    }
}

const FORMATS: [(DataFormat, &str); 4] = [
    (DataFormat::Csv, "CSV (label first)"),
    (DataFormat::MnistIdx, "MNIST IDX images"),
    (DataFormat::Cifar10, "CIFAR-10 batch"),
    (
        DataFormat::ImageFolder,
        "Image folder (one folder per class)",
    ),
];

/// The identity file, as far as the app knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityState {
    Loading,
    Missing,
    Loaded(IdentityView),
    Failed(String),
}

/// A phase of long work, as a progress bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub label: String,
    /// 0: of unknown length (a spinner).
    pub total: u64,
    pub done: u64,
}

/// A small folder browser: egui has no file dialog, and a native one would pull a GTK or
/// portal stack into the build; this one is keyboard-navigable like the rest.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub open: bool,
    pub dir: PathBuf,
    pub entries: Vec<(String, bool)>,
    pub error: Option<String>,
}

impl Browser {
    fn read(&mut self, dir: PathBuf) {
        self.error = None;
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                let mut entries: Vec<(String, bool)> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_str()?.to_string();
                        (!name.starts_with('.')).then(|| (name, e.path().is_dir()))
                    })
                    .collect();
                entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                self.entries = entries;
                self.dir = dir;
            }
            Err(e) => self.error = Some(format!("cannot read {}: {e}", dir.display())),
        }
    }
}

pub struct FlicApp {
    pub config: Config,
    worker: Option<Worker>,
    pub page: Page,
    pub identity: IdentityState,
    pub import_path: String,

    pub network: NetworkChoice,
    pub url: String,
    pub canister: String,
    pub state_dir: String,
    pub connecting: bool,
    pub overview: Option<Box<Overview>>,
    pub connection_error: Option<Failure>,

    pub data_path: String,
    pub format: DataFormat,
    pub salt_file: String,
    pub browser: Browser,
    pub preview: Option<Result<DataPreview, String>>,
    previews: Vec<egui::TextureHandle>,
    pub dataset_name: String,
    pub license: String,
    pub description: String,
    pub salted: bool,
    pub registered: Option<Result<u64, Failure>>,
    pub revoke_confirm: Option<u64>,
    pub revoked: Option<Result<u64, Failure>>,

    pub train_dataset: Option<u64>,
    pub backend: BackendRequest,
    pub every_round: bool,
    /// `None`: the job's preferred encoding.
    pub encoding: Option<flic_protocol::DeltaEncoding>,
    /// KiB/s; empty for no limit.
    pub upload_limit: String,
    pub training: bool,
    pub phase: Option<Phase>,
    /// `(samples trained in this app session, batch loss)`.
    pub losses: Vec<(f64, f32)>,
    loss_offset: u64,
    last_samples: u64,
    pub backend_used: Option<String>,
    pub commits: Vec<CommitView>,
    pub train_result: Option<Result<String, Failure>>,

    pub export_path: String,
    pub exported: Option<Result<String, Failure>>,

    /// The sample to prove, as typed.
    pub prove_index: String,
    /// Where the proof goes; empty: beside the data.
    pub proof_path: String,
    pub proved: Option<Result<String, Failure>>,
    /// A sample proof file to check.
    pub check_path: String,
    pub proof_checked: Option<Result<String, Failure>>,
    /// The current model recomputed from its lineage, in a sentence.
    pub recomputed: Option<Result<String, Failure>>,

    /// Informational lines from the library, newest last.
    pub notes: VecDeque<String>,
    /// Requests sent and not yet done (the UI stays usable; buttons that would race are
    /// disabled).
    pub busy: u32,
}

const MAX_NOTES: usize = 200;

impl FlicApp {
    pub fn new(config: Config) -> Self {
        let (network, url, canister, state_dir) = match &config.connect {
            Some(t) => {
                let choice = match t.network.as_str() {
                    "embedded" => NetworkChoice::Embedded,
                    "local" => NetworkChoice::Local,
                    "ic" => NetworkChoice::Ic,
                    _ => NetworkChoice::Url,
                };
                (
                    choice,
                    if choice == NetworkChoice::Url {
                        t.network.clone()
                    } else {
                        String::new()
                    },
                    t.canister.clone().unwrap_or_default(),
                    t.state
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                )
            }
            None => (
                NetworkChoice::Embedded,
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut browser = Browser {
            dir: home,
            ..Browser::default()
        };
        browser.entries.clear();
        Self {
            config,
            worker: None,
            page: Page::Federation,
            identity: IdentityState::Loading,
            import_path: String::new(),
            network,
            url,
            canister,
            state_dir,
            connecting: false,
            overview: None,
            connection_error: None,
            data_path: String::new(),
            format: DataFormat::Csv,
            salt_file: String::new(),
            browser,
            preview: None,
            previews: Vec::new(),
            dataset_name: String::new(),
            license: "CC-BY-4.0".into(),
            description: String::new(),
            salted: false,
            registered: None,
            revoke_confirm: None,
            revoked: None,
            train_dataset: None,
            backend: BackendRequest::Auto,
            every_round: false,
            encoding: None,
            upload_limit: String::new(),
            training: false,
            phase: None,
            losses: Vec::new(),
            loss_offset: 0,
            last_samples: 0,
            backend_used: None,
            commits: Vec::new(),
            train_result: None,
            export_path: "model.safetensors".into(),
            exported: None,
            prove_index: "0".into(),
            proof_path: String::new(),
            proved: None,
            check_path: String::new(),
            proof_checked: None,
            recomputed: None,
            notes: VecDeque::new(),
            busy: 0,
        }
    }

    fn send(&mut self, request: Request) {
        if let Some(w) = &self.worker {
            self.busy += 1;
            w.send(request);
        }
    }

    /// The target the connection form describes.
    pub fn target(&self) -> Target {
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        match self.network {
            NetworkChoice::Embedded => Target {
                network: "embedded".into(),
                canister: text(&self.canister),
                state: text(&self.state_dir).map(PathBuf::from),
            },
            NetworkChoice::Local => Target {
                network: "local".into(),
                canister: text(&self.canister),
                state: None,
            },
            NetworkChoice::Ic => Target {
                network: "ic".into(),
                canister: text(&self.canister),
                state: None,
            },
            NetworkChoice::Url => Target {
                network: self.url.trim().to_string(),
                canister: text(&self.canister),
                state: None,
            },
        }
    }

    fn data_source(&self) -> DataSource {
        DataSource {
            path: PathBuf::from(self.data_path.trim()),
            format: self.format,
            salt_file: Some(self.salt_file.trim())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }

    fn note(&mut self, line: String) {
        self.notes.push_back(line);
        while self.notes.len() > MAX_NOTES {
            self.notes.pop_front();
        }
    }

    /// Applies one event from the worker.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Identity(Ok(Some(id))) => {
                self.identity = IdentityState::Loaded(id);
                if let Some(t) = self.config.connect.take() {
                    self.connect(t);
                }
            }
            Event::Identity(Ok(None)) => self.identity = IdentityState::Missing,
            Event::Identity(Err(e)) => self.identity = IdentityState::Failed(e),
            Event::Connected(r) | Event::Overview(r) => {
                self.connecting = false;
                match r {
                    Ok(o) => {
                        self.connection_error = None;
                        if self.train_dataset.is_none_or(|id| {
                            !o.datasets
                                .iter()
                                .any(|d| d.id == id && d.revoked_at_ns.is_none())
                        }) {
                            self.train_dataset = o
                                .datasets
                                .iter()
                                .rev()
                                .find(|d| d.revoked_at_ns.is_none())
                                .map(|d| d.id);
                        }
                        self.overview = Some(o);
                    }
                    Err(f) => self.connection_error = Some(f),
                }
            }
            Event::Preview(r) => {
                self.previews.clear();
                if let Ok(p) = &r {
                    if self.dataset_name.is_empty() {
                        self.dataset_name = p
                            .source
                            .path
                            .file_stem()
                            .and_then(|s| s.to_str())
                            .unwrap_or("my data")
                            .to_string();
                    }
                }
                self.preview = Some(r);
            }
            Event::Registered(r) => {
                self.phase = None;
                if let Ok(id) = r {
                    self.train_dataset = Some(id);
                }
                self.registered = Some(r);
            }
            Event::Revoked(r) => self.revoked = Some(r),
            Event::Phase { label, total } => {
                if label == "training" {
                    self.loss_offset += self.last_samples;
                    self.last_samples = 0;
                }
                self.phase = Some(Phase {
                    label,
                    total,
                    done: 0,
                });
            }
            Event::PhaseDone(done) => {
                if let Some(p) = &mut self.phase {
                    p.done = done;
                }
            }
            Event::PhaseFinished(summary) => {
                self.phase = None;
                if !summary.is_empty() {
                    self.note(summary);
                }
            }
            Event::Loss { samples, loss } => {
                self.last_samples = samples;
                self.losses
                    .push(((self.loss_offset + samples) as f64, loss));
            }
            Event::Note(line) => self.note(line),
            Event::Backend(b) => self.backend_used = Some(b),
            Event::Committed(c) => {
                self.note(format!(
                    "committed contribution {} to round {} (weight {}){}",
                    c.contribution_index,
                    c.round,
                    c.weight,
                    if c.round_closed {
                        "; the round closed"
                    } else {
                        ""
                    }
                ));
                self.commits.push(c);
            }
            Event::TrainingEnded(r) => {
                self.training = false;
                self.phase = None;
                self.train_result = Some(r);
            }
            Event::Exported(r) => {
                self.phase = None;
                self.exported = Some(r);
            }
            Event::Proved(r) => self.proved = Some(r),
            Event::SampleProofChecked(r) => self.proof_checked = Some(r),
            Event::Recomputed(r) => self.recomputed = Some(r),
            Event::Done => self.busy = self.busy.saturating_sub(1),
        }
    }

    fn connect(&mut self, target: Target) {
        self.connecting = true;
        self.connection_error = None;
        self.send(Request::Connect(target));
    }

    /// Draws one frame; the first one starts the worker (it repaints this context).
    pub fn show(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if self.worker.is_none() {
            ctx.set_zoom_factor(self.config.scale);
            let wake = ctx.clone();
            self.worker = Some(Worker::spawn(
                self.config.identity_path.clone(),
                self.config.work_dir.clone(),
                move || wake.request_repaint(),
            ));
            self.send(Request::LoadIdentity);
        }
        while let Some(event) = self.worker.as_ref().and_then(|w| w.events.try_recv().ok()) {
            self.apply(event);
        }
        if self.phase.is_some() || self.connecting {
            // Spinners animate.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }

        egui::Panel::top("title").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("flic");
                ui.label("federated learning with on-chain aggregation");
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if let IdentityState::Loaded(id) = &self.identity {
                        ui.label(format!("you: {}", id.principal))
                            .on_hover_text(id.path.display().to_string());
                    }
                });
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));

        let IdentityState::Loaded(_) = &self.identity else {
            egui::CentralPanel::default().show(ui, |ui| self.identity_page(ui));
            return;
        };
        egui::Panel::left("nav").resizable(false).show(ui, |ui| {
            ui.add_space(8.0);
            for page in Page::ALL {
                let enabled = page == Page::Federation || self.overview.is_some();
                ui.add_enabled_ui(enabled, |ui| {
                    if ui
                        .selectable_label(self.page == page, page.title())
                        .clicked()
                    {
                        self.page = page;
                    }
                });
            }
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| match self.page {
                Page::Federation => self.federation_page(ui),
                Page::Data => self.data_page(ui),
                Page::Contribute => self.contribute_page(ui),
                Page::Built => self.built_page(ui),
            });
        });
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if let Some(p) = &self.phase {
                if p.total > 0 {
                    let f = p.done as f32 / p.total as f32;
                    ui.add(
                        egui::ProgressBar::new(f)
                            .desired_width(240.0)
                            .text(format!("{} {}/{}", p.label, p.done, p.total)),
                    );
                } else {
                    ui.spinner();
                    ui.label(&p.label);
                }
            } else if self.busy > 0 {
                ui.spinner();
                ui.label("working");
            }
            if let Some(line) = self.notes.back() {
                ui.label(RichText::new(line).weak());
            }
        });
    }

    fn identity_page(&mut self, ui: &mut Ui) {
        ui.heading("Your identity");
        ui.label("flic signs every contribution with an Ed25519 key kept in this file (the one `flic keygen` writes; only you can read it):");
        ui.monospace(self.config.identity_path.display().to_string());
        ui.add_space(8.0);
        match &self.identity {
            IdentityState::Loading => {
                ui.spinner();
                return;
            }
            IdentityState::Failed(e) => {
                failure_box(
                    ui,
                    "Cannot use the identity file",
                    "Fix or move the file, or import another identity.",
                    e,
                );
            }
            IdentityState::Missing | IdentityState::Loaded(_) => {}
        }
        if self.identity_file_exists() {
            return;
        }
        if ui.button("Create a new identity").clicked() {
            self.send(Request::CreateIdentity);
        }
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            let label = ui.label("Import a PEM file:");
            ui.add(egui::TextEdit::singleline(&mut self.import_path).desired_width(360.0))
                .labelled_by(label.id);
            let ok = !self.import_path.trim().is_empty();
            if ui.add_enabled(ok, egui::Button::new("Import")).clicked() {
                let from = PathBuf::from(self.import_path.trim());
                self.send(Request::ImportIdentity(from));
            }
        });
    }

    fn identity_file_exists(&self) -> bool {
        matches!(self.identity, IdentityState::Failed(_)) && self.config.identity_path.exists()
    }

    fn federation_page(&mut self, ui: &mut Ui) {
        ui.heading("Connect to a federation");
        ui.horizontal_wrapped(|ui| {
            for choice in NetworkChoice::ALL {
                ui.radio_value(&mut self.network, choice, choice.label());
            }
        });
        egui::Grid::new("connect").num_columns(2).show(ui, |ui| {
            match self.network {
                NetworkChoice::Embedded => {
                    let l = ui.label("State folder");
                    ui.add(egui::TextEdit::singleline(&mut self.state_dir).desired_width(420.0))
                        .labelled_by(l.id)
                        .on_hover_text("written by `flic simulate --state DIR`");
                    ui.end_row();
                }
                NetworkChoice::Url => {
                    let l = ui.label("URL");
                    ui.add(egui::TextEdit::singleline(&mut self.url).desired_width(420.0))
                        .labelled_by(l.id);
                    ui.end_row();
                }
                NetworkChoice::Local | NetworkChoice::Ic => {}
            }
            let l = ui.label("Canister id");
            ui.add(egui::TextEdit::singleline(&mut self.canister).desired_width(420.0))
                .labelled_by(l.id)
                .on_hover_text(if self.network == NetworkChoice::Embedded {
                    "optional: the state's first canister"
                } else {
                    "the aggregator canister's principal"
                });
            ui.end_row();
        });
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !self.connecting && self.busy == 0,
                    egui::Button::new("Connect"),
                )
                .clicked()
            {
                let t = self.target();
                self.connect(t);
            }
            if self.overview.is_some()
                && ui
                    .add_enabled(self.busy == 0, egui::Button::new("Refresh"))
                    .clicked()
            {
                self.send(Request::Refresh);
            }
            if self.connecting {
                ui.spinner();
                ui.label("connecting and checking certificates");
            }
        });
        if let Some(f) = &self.connection_error {
            show_failure(ui, f);
        }
        let Some(o) = &self.overview else {
            return;
        };
        ui.separator();
        ui.heading("The job");
        ui.label(
            RichText::new("Verified: job, round, model version and configuration are checked against the IC's certificate")
                .color(ok_color(ui)),
        );
        egui::Grid::new("job")
            .num_columns(2)
            .striped(true)
            .show(ui, |ui| {
                for (k, v) in job_rows(o) {
                    ui.label(k);
                    ui.label(v);
                    ui.end_row();
                }
            });
    }

    fn data_page(&mut self, ui: &mut Ui) {
        ui.heading("My data");
        ui.label("Your data never leaves this computer: only a commitment (a Merkle root of its samples) is registered.");
        egui::Grid::new("data").num_columns(2).show(ui, |ui| {
            let l = ui.label("Data file or folder");
            ui.horizontal(|ui| {
                ui.add(egui::TextEdit::singleline(&mut self.data_path).desired_width(360.0))
                    .labelled_by(l.id);
                if ui.button("Browse...").clicked() {
                    self.browser.open = !self.browser.open;
                    if self.browser.open {
                        let start = PathBuf::from(self.data_path.trim());
                        let dir = if start.is_dir() {
                            start
                        } else {
                            start
                                .parent()
                                .filter(|p| p.is_dir())
                                .map(PathBuf::from)
                                .unwrap_or_else(|| self.browser.dir.clone())
                        };
                        self.browser.read(dir);
                    }
                }
            });
            ui.end_row();
            let l = ui.label("Format");
            egui::ComboBox::from_id_salt("format")
                .selected_text(format_label(self.format))
                .show_ui(ui, |ui| {
                    for (f, label) in FORMATS {
                        ui.selectable_value(&mut self.format, f, label);
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Salt file (optional)");
            ui.add(egui::TextEdit::singleline(&mut self.salt_file).desired_width(360.0))
                .labelled_by(l.id)
                .on_hover_text("the salt of a salted commitment, to train or re-register");
            ui.end_row();
        });
        if self.browser.open {
            self.browser_ui(ui);
        }
        let has_path = !self.data_path.trim().is_empty();
        if ui
            .add_enabled(has_path && self.busy == 0, egui::Button::new("Preview"))
            .clicked()
        {
            let s = self.data_source();
            self.send(Request::Preview(s));
        }
        match &self.preview {
            Some(Err(e)) => failure_box(
                ui,
                "Cannot read the data",
                "Check the path and the format.",
                e,
            ),
            Some(Ok(p)) if p.source == self.data_source() => {
                self.preview_ui(ui);
                self.register_ui(ui);
            }
            _ => {}
        }
        ui.separator();
        self.datasets_ui(ui);
        ui.separator();
        self.sample_proofs_ui(ui);
    }

    /// `flic dataset prove` and `flic verify sample`: show someone that one sample is in
    /// a registered dataset without showing them the rest.
    fn sample_proofs_ui(&mut self, ui: &mut Ui) {
        ui.heading("Sample proofs");
        ui.label("Prove that one sample is in a registered dataset, without disclosing the others (the proof holds that sample, and the salt of a salted commitment).");
        let index = parse_sample_index(&self.prove_index);
        let has_data = !self.data_path.trim().is_empty();
        egui::Grid::new("prove").num_columns(2).show(ui, |ui| {
            let l = ui.label("Sample number");
            ui.add(egui::TextEdit::singleline(&mut self.prove_index).desired_width(120.0))
                .labelled_by(l.id)
                .on_hover_text("counting from 0, in the order the data file lists them");
            ui.end_row();
            let l = ui.label("Proof file");
            ui.add(
                egui::TextEdit::singleline(&mut self.proof_path)
                    .hint_text("beside the data")
                    .desired_width(360.0),
            )
            .labelled_by(l.id);
            ui.end_row();
        });
        if index.is_none() {
            ui.colored_label(
                ui.visuals().error_fg_color,
                "The sample number is a whole number, 0 or more.",
            );
        }
        if ui
            .add_enabled(
                self.busy == 0 && has_data && index.is_some(),
                egui::Button::new("Write sample proof"),
            )
            .on_disabled_hover_text("choose the data file above first")
            .clicked()
        {
            if let Some(index) = index {
                let source = self.data_source();
                let out = match self.proof_path.trim() {
                    "" => default_proof_path(&source.path, index),
                    p => PathBuf::from(p),
                };
                self.proved = None;
                self.send(Request::ProveSample { source, index, out });
            }
        }
        proof_outcome(ui, &self.proved);
        ui.add_space(6.0);
        egui::Grid::new("check-proof")
            .num_columns(2)
            .show(ui, |ui| {
                let l = ui.label("Proof to check");
                ui.add(egui::TextEdit::singleline(&mut self.check_path).desired_width(360.0))
                    .labelled_by(l.id);
                ui.end_row();
            });
        if ui
            .add_enabled(
                self.busy == 0 && !self.check_path.trim().is_empty(),
                egui::Button::new("Check sample proof"),
            )
            .clicked()
        {
            self.proof_checked = None;
            self.send(Request::CheckSampleProof(PathBuf::from(
                self.check_path.trim(),
            )));
        }
        proof_outcome(ui, &self.proof_checked);
    }

    fn browser_ui(&mut self, ui: &mut Ui) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(self.browser.dir.display().to_string());
                if ui.button("Up").clicked() {
                    if let Some(p) = self.browser.dir.parent().map(PathBuf::from) {
                        self.browser.read(p);
                    }
                }
                if ui.button("Use this folder").clicked() {
                    self.data_path = self.browser.dir.display().to_string();
                    self.format = DataFormat::ImageFolder;
                    self.browser.open = false;
                }
                if ui.button("Close").clicked() {
                    self.browser.open = false;
                }
            });
            if let Some(e) = &self.browser.error {
                ui.colored_label(err_color(ui), e);
            }
            let mut go = None;
            egui::ScrollArea::vertical()
                .id_salt("browser")
                .max_height(200.0)
                .show(ui, |ui| {
                    for (name, is_dir) in &self.browser.entries {
                        let text = if *is_dir {
                            format!("{name}/")
                        } else {
                            name.clone()
                        };
                        if ui.selectable_label(false, text).clicked() {
                            go = Some((self.browser.dir.join(name), *is_dir));
                        }
                    }
                });
            if let Some((path, is_dir)) = go {
                if is_dir {
                    self.browser.read(path);
                } else {
                    self.format = guess_format(&path).unwrap_or(self.format);
                    self.data_path = path.display().to_string();
                    self.browser.open = false;
                }
            }
        });
    }

    fn preview_ui(&mut self, ui: &mut Ui) {
        let Some(Ok(p)) = &self.preview else {
            return;
        };
        ui.add_space(6.0);
        ui.label(
            RichText::new(format!(
                "{} samples, shape {:?}, {} classes",
                p.samples, p.feature_shape, p.num_classes
            ))
            .strong(),
        );
        ui.label(format!("unsalted commitment {}", hex::encode(p.commitment)));
        let image = image_shape(&p.feature_shape).filter(|_| self.previews.is_empty());
        if let Some((c, h, w)) = image {
            for (i, (_, bytes)) in p.first.iter().enumerate() {
                let img = if c == 1 {
                    egui::ColorImage::from_gray([w, h], bytes)
                } else {
                    // Planar channels to interleaved RGB.
                    let plane = h * w;
                    let rgb: Vec<u8> = (0..plane)
                        .flat_map(|j| [bytes[j], bytes[plane + j], bytes[2 * plane + j]])
                        .collect();
                    egui::ColorImage::from_rgb([w, h], &rgb)
                };
                self.previews.push(ui.ctx().load_texture(
                    format!("preview-{i}"),
                    img,
                    egui::TextureOptions::NEAREST,
                ));
            }
        }
        ui.horizontal_wrapped(|ui| {
            for (i, (label, bytes)) in p.first.iter().enumerate() {
                ui.vertical(|ui| {
                    if let Some(t) = self.previews.get(i) {
                        ui.add(
                            egui::Image::new(egui::load::SizedTexture::new(
                                t.id(),
                                egui::vec2(56.0, 56.0),
                            ))
                            .alt_text(format!("sample {i}, label {label}")),
                        );
                    } else {
                        let head: Vec<String> =
                            bytes.iter().take(4).map(|b| format!("{b}")).collect();
                        ui.monospace(format!("[{} ...]", head.join(", ")));
                    }
                    ui.label(format!("label {label}"));
                });
            }
        });
        ui.label("Samples per label:");
        let max = p.label_counts.iter().copied().max().unwrap_or(1).max(1);
        egui::Grid::new("labels").num_columns(3).show(ui, |ui| {
            for (label, &n) in p.label_counts.iter().enumerate() {
                ui.label(format!("{label}"));
                ui.add(
                    egui::ProgressBar::new(n as f32 / max as f32)
                        .desired_width(200.0)
                        .text(""),
                );
                ui.label(n.to_string());
                ui.end_row();
            }
        });
    }

    fn register_ui(&mut self, ui: &mut Ui) {
        ui.add_space(6.0);
        ui.label(RichText::new("Register this data").strong());
        egui::Grid::new("register").num_columns(2).show(ui, |ui| {
            let l = ui.label("Name");
            ui.text_edit_singleline(&mut self.dataset_name)
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("License");
            ui.text_edit_singleline(&mut self.license).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Description");
            ui.text_edit_singleline(&mut self.description)
                .labelled_by(l.id);
            ui.end_row();
        });
        ui.checkbox(&mut self.salted, "Salt the commitment")
            .on_hover_text("writes a random salt beside the data: nobody can test whether a guessed sample is in it");
        if ui
            .add_enabled(
                self.busy == 0 && !self.dataset_name.trim().is_empty(),
                egui::Button::new("Register dataset"),
            )
            .clicked()
        {
            let source = self.data_source();
            self.registered = None;
            self.send(Request::Register {
                source,
                name: self.dataset_name.trim().to_string(),
                license: self.license.trim().to_string(),
                description: self.description.trim().to_string(),
                salted: self.salted,
            });
        }
        match &self.registered {
            Some(Ok(id)) => {
                ui.colored_label(ok_color(ui), format!("Registered as dataset {id}"));
            }
            Some(Err(f)) => show_failure(ui, f),
            None => {}
        }
    }

    fn datasets_ui(&mut self, ui: &mut Ui) {
        ui.heading("My registered datasets");
        let Some(o) = &self.overview else {
            return;
        };
        if o.datasets.is_empty() {
            ui.label("none yet: preview a data file above and register it");
            return;
        }
        let mut revoke = None;
        table(
            ui,
            "datasets",
            &["id", "name", "samples", "license", "commitment", ""],
            |ui| {
                for d in &o.datasets {
                    ui.label(d.id.to_string());
                    ui.label(&d.name);
                    ui.label(d.sample_count.to_string());
                    ui.label(&d.license);
                    ui.monospace(short_hex(d.commitment.as_slice()));
                    if d.revoked_at_ns.is_some() {
                        ui.label("revoked");
                    } else if self.revoke_confirm == Some(d.id) {
                        ui.horizontal(|ui| {
                            if ui.button(format!("Confirm revoking {}", d.id)).clicked() {
                                revoke = Some(d.id);
                            }
                            if ui.button("Keep").clicked() {
                                self.revoke_confirm = None;
                            }
                        });
                    } else if ui
                        .add_enabled(
                            self.busy == 0,
                            egui::Button::new(format!("Revoke {}", d.id)),
                        )
                        .on_hover_text(
                            "no further contributions with it; past ones stay in the lineage",
                        )
                        .clicked()
                    {
                        self.revoke_confirm = Some(d.id);
                    }
                    ui.end_row();
                }
            },
        );
        if let Some(id) = revoke {
            self.revoke_confirm = None;
            self.send(Request::Revoke(id));
        }
        if let Some(Err(f)) = &self.revoked {
            show_failure(ui, f);
        }
    }

    fn contribute_page(&mut self, ui: &mut Ui) {
        ui.heading("Contribute");
        let Some(o) = &self.overview else {
            return;
        };
        let active: Vec<(u64, String)> = o
            .datasets
            .iter()
            .filter(|d| d.revoked_at_ns.is_none())
            .map(|d| {
                (
                    d.id,
                    format!("{} ({}, {} samples)", d.id, d.name, d.sample_count),
                )
            })
            .collect();
        let info = &o.info;
        ui.label(format!(
            "Round {} is {}: {} committed, {} uploading{}",
            info.round,
            info.state,
            info.committed,
            info.pending,
            if info.deadline_ns > 0 {
                format!("; closes {}", relative(info.deadline_ns, o.now_ns))
            } else {
                String::new()
            }
        ));
        if active.is_empty() {
            ui.label("Register a dataset under My data first.");
            return;
        }
        let auto = o.auto_backend.clone();
        let allowed = info
            .config
            .as_ref()
            .map(|c| c.allowed_encodings.clone())
            .unwrap_or_default();
        egui::Grid::new("train").num_columns(2).show(ui, |ui| {
            let l = ui.label("Dataset");
            let selected = active
                .iter()
                .find(|(id, _)| Some(*id) == self.train_dataset)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| "choose".into());
            egui::ComboBox::from_id_salt("dataset")
                .selected_text(selected)
                .show_ui(ui, |ui| {
                    for (id, text) in &active {
                        ui.selectable_value(&mut self.train_dataset, Some(*id), text);
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Data file");
            ui.label(if self.data_path.is_empty() {
                "set it under My data".to_string()
            } else {
                format!("{} ({})", self.data_path, format_label(self.format))
            })
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Backend");
            egui::ComboBox::from_id_salt("backend")
                .selected_text(backend_label(self.backend, &auto))
                .show_ui(ui, |ui| {
                    ui.selectable_value(
                        &mut self.backend,
                        BackendRequest::Auto,
                        backend_label(BackendRequest::Auto, &auto),
                    );
                    for b in Backend::compiled() {
                        let r = BackendRequest::Named(b);
                        ui.selectable_value(&mut self.backend, r, backend_label(r, &auto));
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Encoding");
            let preferred = flic_client::participant::preferred_encoding(&allowed);
            let text = |e: Option<flic_protocol::DeltaEncoding>| match e {
                None => format!("the job's preferred: {preferred}"),
                Some(e) => e.to_string(),
            };
            egui::ComboBox::from_id_salt("encoding")
                .selected_text(text(self.encoding))
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.encoding, None, text(None));
                    for e in &allowed {
                        ui.selectable_value(&mut self.encoding, Some(*e), text(Some(*e)));
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Upload limit (KiB/s)");
            ui.add(
                egui::TextEdit::singleline(&mut self.upload_limit)
                    .hint_text("no limit")
                    .desired_width(120.0),
            )
            .labelled_by(l.id)
            .on_hover_text("for a shared or metered link; empty for no limit");
            ui.end_row();
        });
        let bad_limit =
            !self.upload_limit.trim().is_empty() && upload_rate(&self.upload_limit).is_none();
        if bad_limit {
            ui.colored_label(
                err_color(ui),
                "The upload limit is a whole number of KiB/s, at least 1.",
            );
        }
        ui.checkbox(
            &mut self.every_round,
            "Keep contributing to every round while the app runs",
        );
        ui.horizontal(|ui| {
            let ready = !self.training
                && !bad_limit
                && self.busy == 0
                && self.train_dataset.is_some()
                && !self.data_path.trim().is_empty();
            if ui
                .add_enabled(ready, egui::Button::new("Train this round"))
                .clicked()
            {
                self.training = true;
                self.train_result = None;
                self.backend_used = None;
                let request = Request::Train {
                    source: self.data_source(),
                    dataset_id: self.train_dataset.expect("checked"),
                    options: TrainOptions {
                        backend: self.backend,
                        every_round: self.every_round,
                        encoding: self.encoding,
                        max_upload_rate: upload_rate(&self.upload_limit),
                    },
                };
                self.send(request);
            }
            if self.training && ui.button("Stop after this round").clicked() {
                if let Some(w) = &self.worker {
                    w.stop.store(true, Ordering::SeqCst);
                }
            }
        });
        if let Some(b) = &self.backend_used {
            ui.label(format!("training on {b}"));
        }
        if let Some(p) = &self.phase {
            let f = if p.total > 0 {
                p.done as f32 / p.total as f32
            } else {
                0.0
            };
            ui.add(
                egui::ProgressBar::new(f)
                    .show_percentage()
                    .text(format!("{}: {} of {}", p.label, p.done, p.total)),
            );
        }
        loss_curve(ui, &self.losses);
        match &self.train_result {
            Some(Ok(why)) => {
                ui.colored_label(ok_color(ui), format!("Done: {why}"));
            }
            Some(Err(f)) => show_failure(ui, f),
            None => {}
        }
        if !self.commits.is_empty() {
            ui.label(RichText::new("This session's commits").strong());
            for c in &self.commits {
                ui.label(format!(
                    "round {}: contribution {}, weight {}, {} chunks sent ({} resumed){}{}",
                    c.round,
                    c.contribution_index,
                    c.weight,
                    c.chunks_sent,
                    c.chunks_resumed,
                    c.mean_loss
                        .map(|l| format!(", mean loss {l:.4}"))
                        .unwrap_or_default(),
                    if c.round_closed {
                        ", closed the round"
                    } else {
                        ""
                    }
                ));
            }
        }
    }

    fn built_page(&mut self, ui: &mut Ui) {
        ui.heading("What my data built");
        let Some(o) = &self.overview else {
            return;
        };
        ui.label(RichText::new("My contributions").strong());
        if o.contributions.is_empty() {
            ui.label("none yet");
        } else {
            table(
                ui,
                "contributions",
                &["contribution", "round", "dataset", "weight", "receipt"],
                |ui| {
                    for c in &o.contributions {
                        ui.label(c.index.to_string());
                        ui.label(c.round.to_string());
                        ui.label(c.dataset_id.to_string());
                        ui.label(c.weight.to_string());
                        match o.receipts.iter().find(|r| r.contribution_index == c.index) {
                            Some(r) => match &r.verified {
                                Ok(()) => ui
                                    .colored_label(ok_color(ui), "verified")
                                    .on_hover_text(r.path.display().to_string()),
                                Err(e) => {
                                    ui.colored_label(err_color(ui), format!("does not verify: {e}"))
                                }
                            },
                            None if c.round >= o.info.round => ui.label("round still open"),
                            None => ui.label("not in this work folder"),
                        };
                        ui.end_row();
                    }
                },
            );
        }
        ui.add_space(8.0);
        ui.label(RichText::new("Model versions my data shaped").strong());
        let shaped = shaped_versions(o);
        if shaped.is_empty() {
            ui.label("none yet: a version is built when a round with your contribution closes");
        } else {
            table(
                ui,
                "versions",
                &["round", "new model version", "my weight", "my share"],
                |ui| {
                    for v in &shaped {
                        ui.label(v.round.to_string());
                        ui.monospace(short_hex(&v.version));
                        ui.label(format!("{} of {}", v.mine, v.total));
                        ui.add(
                            egui::ProgressBar::new(v.share() as f32)
                                .desired_width(160.0)
                                .text(format!("{:.1} %", v.share() * 100.0)),
                        );
                        ui.end_row();
                    }
                },
            );
            ui.label(RichText::new("Every later version descends from these.").weak());
        }
        ui.add_space(8.0);
        ui.label(RichText::new("Recompute the current model").strong());
        let why_not = o.info.config.as_ref().and_then(|c| {
            if !c.retain_contributions {
                Some("This job does not retain its contributions, so its models cannot be recomputed; your share above is the certified one.")
            } else if c.dp.is_some() {
                Some("This job adds differential-privacy noise from secret seeds, so its models cannot be recomputed; your share above is the certified one.")
            } else {
                None
            }
        });
        let version = o.info.model_version;
        if let Some(why) = why_not {
            ui.label(RichText::new(why).weak());
        } else if let Some(v) = version {
            ui.label("Replays every certified round from the initial model, as `flic verify lineage` does: the result must hash to the current version, bit for bit.");
            if ui
                .add_enabled(
                    self.busy == 0,
                    egui::Button::new("Recompute from the lineage"),
                )
                .clicked()
            {
                self.recomputed = None;
                self.send(Request::Recompute(v.into_array()));
            }
        }
        outcome(ui, &self.recomputed);
        ui.add_space(8.0);
        ui.label(RichText::new("Export the current model").strong());
        ui.horizontal(|ui| {
            let l = ui.label("File");
            ui.add(egui::TextEdit::singleline(&mut self.export_path).desired_width(320.0))
                .labelled_by(l.id);
            if ui
                .add_enabled(
                    self.busy == 0 && !self.export_path.trim().is_empty(),
                    egui::Button::new("Export safetensors"),
                )
                .clicked()
            {
                self.exported = None;
                let p = PathBuf::from(self.export_path.trim());
                self.send(Request::Export(p));
            }
        });
        outcome(ui, &self.exported);
    }
}

/// One closed round that includes my contributions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    pub round: u64,
    pub version: Vec<u8>,
    pub mine: u64,
    pub total: u64,
}

impl Shaped {
    pub fn share(&self) -> f64 {
        self.mine as f64 / self.total.max(1) as f64
    }
}

/// The certified rounds my contributions went into, with my weight in each.
pub fn shaped_versions(o: &Overview) -> Vec<Shaped> {
    o.rounds
        .iter()
        .filter_map(|r| {
            let first = r.first_contribution;
            let end = first + r.contribution_count as u64;
            let mine: u64 = o
                .contributions
                .iter()
                .filter(|c| c.round == r.round && (first..end).contains(&c.index))
                .map(|c| c.weight)
                .sum();
            (mine > 0).then(|| Shaped {
                round: r.round,
                version: r.new_version.as_slice().to_vec(),
                mine,
                total: r.total_weight,
            })
        })
        .collect()
}

/// A sample number as typed: a whole number, 0 or more.
pub fn parse_sample_index(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `DATA.sample-N.json`, beside the data file or folder.
pub fn default_proof_path(data: &Path, index: u64) -> PathBuf {
    let mut p = data.as_os_str().to_owned();
    p.push(format!(".sample-{index}.json"));
    p.into()
}

/// What a finished request said: its sentence, or its failure state.
fn outcome(ui: &mut Ui, outcome: &Option<Result<String, Failure>>) {
    match outcome {
        Some(Ok(line)) => {
            ui.colored_label(ok_color(ui), line);
        }
        Some(Err(f)) => show_failure(ui, f),
        None => {}
    }
}

/// [`outcome`], where any failure but an unreachable network means the proof is bad.
fn proof_outcome(ui: &mut Ui, result: &Option<Result<String, Failure>>) {
    match result {
        Some(Err(f)) if f.kind != crate::failure::FailureKind::NetworkDown => failure_box(
            ui,
            "The sample proof does not hold",
            "Check that the file, data and salt file are the ones registered.",
            &f.message,
        ),
        _ => outcome(ui, result),
    }
}

/// The job's facts, as the Federation page lists them.
pub fn job_rows(o: &Overview) -> Vec<(String, String)> {
    let info = &o.info;
    let mut rows = vec![
        ("network".to_string(), o.network.clone()),
        ("canister".into(), o.canister.clone()),
        ("job".into(), info.job_id.to_string()),
        ("state".into(), info.state.to_string()),
        ("round".into(), info.round.to_string()),
        (
            "committed / uploading".into(),
            format!("{} / {}", info.committed, info.pending),
        ),
        (
            "model version".into(),
            info.model_version
                .map(|v| hex::encode(v.as_slice()))
                .unwrap_or_else(|| "-".into()),
        ),
        ("parameters".into(), info.param_count.to_string()),
    ];
    if info.deadline_ns > 0 {
        rows.push((
            "deadline".into(),
            format!(
                "{} ({})",
                flic_client::output::utc(info.deadline_ns),
                relative(info.deadline_ns, o.now_ns)
            ),
        ));
    }
    if let Some(c) = &info.config {
        let hp = &c.client;
        rows.push(("model".into(), c.model_spec.architecture.clone()));
        rows.push((
            "contributions per round".into(),
            format!("{} to {}", c.min_clients, c.max_clients),
        ));
        rows.push(("aggregation".into(), c.aggregation().to_string()));
        rows.push(("server optimizer".into(), c.server_optimizer().to_string()));
        rows.push((
            "local training".into(),
            format!(
                "{:?}, learning rate {}, batch {}, {} epoch(s){}",
                hp.optimizer,
                hp.learning_rate,
                hp.batch_size,
                hp.local_epochs,
                if hp.proximal_mu() > 0.0 {
                    format!(", FedProx mu {}", hp.proximal_mu())
                } else {
                    String::new()
                }
            ),
        ));
        rows.push((
            "clip norm".into(),
            info.clip_norm().unwrap_or(c.clip_norm).to_string(),
        ));
        rows.push(("weight cap".into(), c.max_weight.to_string()));
        rows.push(("admission".into(), format!("{:?}", c.admission())));
        rows.push((
            "privacy".into(),
            match &c.dp {
                Some(dp) => format!(
                    "{} DP: epsilon {:.3} of {} spent (delta {})",
                    dp.mode.name(),
                    dp.epsilon_after(info.round),
                    dp.target_epsilon,
                    dp.delta
                ),
                None => "none".into(),
            },
        ));
        rows.push((
            "secure aggregation".into(),
            match &c.secure_aggregation {
                Some(sa) => format!(
                    "yes: the canister sees only the sum; phases of {:.0} s, up to {:.0} % may drop out",
                    sa.phase_duration_ns as f64 / 1e9,
                    sa.max_dropout_fraction * 100.0
                ),
                None => "no".into(),
            },
        ));
        rows.push((
            "encodings".into(),
            flic_client::output::comma_list(&c.allowed_encodings),
        ));
        rows.push((
            "contributions retained".into(),
            if c.retain_contributions {
                "yes (lineage recomputable)"
            } else {
                "no"
            }
            .into(),
        ));
    }
    rows.push(("closed rounds".into(), o.rounds.len().to_string()));
    rows
}

/// An upload limit in KiB/s as bytes per second; `None` when empty or not a positive
/// whole number.
pub fn upload_rate(kib_per_s: &str) -> Option<u64> {
    kib_per_s
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|&k| k > 0)
        .and_then(|k| k.checked_mul(1024))
}

fn format_label(f: DataFormat) -> &'static str {
    FORMATS
        .iter()
        .find(|(g, _)| *g == f)
        .map(|(_, l)| *l)
        .unwrap_or("?")
}

fn backend_label(r: BackendRequest, auto: &str) -> String {
    match r {
        BackendRequest::Auto => format!("auto: {auto}"),
        BackendRequest::Named(b) => b.to_string(),
    }
}

/// The format a file's name suggests.
pub fn guess_format(path: &std::path::Path) -> Option<DataFormat> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    if name.ends_with(".csv") {
        Some(DataFormat::Csv)
    } else if name.contains("idx3") {
        Some(DataFormat::MnistIdx)
    } else if name.ends_with(".bin") {
        Some(DataFormat::Cifar10)
    } else {
        None
    }
}

/// `(channels, height, width)` for a sample shape that is an image (1 or 3 channels).
fn image_shape(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match *shape {
        [c @ (1 | 3), h, w] if h > 1 && w > 1 => Some((c, h, w)),
        _ => None,
    }
}

fn ok_color(ui: &Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(120, 200, 120)
    } else {
        Color32::from_rgb(20, 120, 40)
    }
}

fn err_color(ui: &Ui) -> Color32 {
    ui.visuals().error_fg_color
}

/// A striped grid with a bold header row; `rows` ends each of its rows.
fn table(ui: &mut Ui, id: &str, headers: &[&str], rows: impl FnOnce(&mut Ui)) {
    egui::Grid::new(id)
        .num_columns(headers.len())
        .striped(true)
        .show(ui, |ui| {
            for h in headers {
                ui.label(RichText::new(*h).strong());
            }
            ui.end_row();
            rows(ui);
        });
}

/// A failure: what happened, what to do, and the library's message.
/// A failure's state: its kind's title and advice, and the library's message.
fn show_failure(ui: &mut Ui, f: &Failure) {
    failure_box(ui, f.kind.title(), f.kind.advice(), &f.message)
}

fn failure_box(ui: &mut Ui, title: &str, advice: &str, message: &str) {
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.0, err_color(ui)))
        .show(ui, |ui| {
            ui.label(RichText::new(title).strong().color(err_color(ui)));
            ui.label(advice);
            ui.label(RichText::new(message).monospace());
        });
}

/// The batch losses so far, as a line over samples trained.
fn loss_curve(ui: &mut Ui, losses: &[(f64, f32)]) {
    if losses.len() < 2 {
        return;
    }
    let last = losses.last().expect("two or more").1;
    let (lo, hi) = losses
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &(_, l)| {
            (a.min(l), b.max(l))
        });
    ui.label(format!(
        "loss: {last:.4} now, {lo:.4} lowest, over {} batches",
        losses.len()
    ));
    let size = egui::vec2(ui.available_width().min(520.0), 140.0);
    let (response, painter) = ui.allocate_painter(size, egui::Sense::hover());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, "loss curve"));
    let rect = response.rect;
    painter.rect_stroke(
        rect,
        2.0,
        ui.visuals().widgets.noninteractive.bg_stroke,
        egui::StrokeKind::Inside,
    );
    let x_max = losses.last().expect("two or more").0.max(1.0);
    let span = (hi - lo).max(1e-6);
    let points: Vec<egui::Pos2> = losses
        .iter()
        .map(|&(x, l)| {
            egui::pos2(
                rect.left() + 4.0 + (x / x_max) as f32 * (rect.width() - 8.0),
                rect.bottom() - 4.0 - (l - lo) / span * (rect.height() - 8.0),
            )
        })
        .collect();
    painter.add(egui::Shape::line(
        points,
        egui::Stroke::new(1.5, ui.visuals().selection.bg_fill),
    ));
}
