//! `flic-model-zoo`: the models a federation trains, their flat parameter layout, datasets,
//! partitioners, local training and evaluation, on burn 0.22.
//!
//! - [`model`]: `linear`, `mlp`, `lenet`, `cifar-cnn`, all built from one [`ModelConfig`].
//! - [`flat`]: the [`ModelSpec`](flic_protocol::ModelSpec) of a config, and exact
//!   [`flatten`]/[`unflatten`] between a module and a `Vec<f32>`.
//! - [`safetensors_io`]: a flat model as a `.safetensors` file and back.
//! - [`dataset`]: in-memory [`Dataset`]s, loaders (MNIST IDX, CSV, CIFAR-10, image folders) and
//!   seeded synthetic data.
//! - [`partition`]: `iid`, `dirichlet:ALPHA` and `shards:K` splits of a dataset over clients.
//! - [`train`]: [`train_local`] and [`evaluate`].
//! - [`backend`]: the run-time [`Backend`] choice (`auto`: a GPU where one is found).
//! - [`hardware`]: the GPU adapters and CUDA devices this machine has.
//!
//! The layout rule and the file formats are described in `docs/model-zoo.md`.

pub mod backend;
pub mod dataset;
pub mod flat;
pub mod hardware;
pub mod model;
pub mod partition;
pub mod safetensors_io;
pub mod train;

pub use backend::{Backend, BackendError, BackendRequest, Plan, Started};
pub use dataset::{Dataset, DatasetError};
pub use flat::{
    config_from_spec, flatten, init_weights, model_from_spec, model_spec, param_count, unflatten,
};
pub use model::{Model, ModelConfig, ModelError, ARCHITECTURES};
pub use partition::{PartitionError, Partitioner};
pub use safetensors_io::{
    export_safetensors, import_safetensors, read_safetensors, SafetensorsError,
};
pub use train::{
    evaluate, evaluate_model, train_local, Eval, OptimizerKind, TrainError, TrainOutcome,
    TrainParams, TrainProgress,
};

/// Re-exported so callers need no direct burn dependency to hold a device.
pub use burn::tensor::Device;
