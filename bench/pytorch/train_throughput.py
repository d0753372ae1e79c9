#!/usr/bin/env python3
"""PyTorch side of `flic bench train`: the same model, data, initial weights, batch size
and thread count as burn, trained on the CPU or on CUDA (the manifest's `device`), timed
the same way.

`flic bench train --pytorch PYTHON` writes one folder per model (manifest.json plus raw
little-endian files) and runs this script on it; the script prints one JSON object on
stdout. It is not run in CI (PyTorch is a 1 GB+ download): `bench/pytorch/setup.sh`
installs it into a virtualenv.

The architectures mirror `model-zoo/src/model/*.rs` layer for layer, and parameters are
loaded in the zoo's flat order (burn stores a dense layer's weight as [in, out], PyTorch as
[out, in], hence the transpose). The mean cross-entropy of the initial weights over the
whole dataset must equal burn's: that is the check that both sides train the same model.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class ZooModel(nn.Module):
    """One zoo architecture; `dense` and `convs` are registered in the zoo's flat order."""

    def __init__(self, config):
        super().__init__()
        arch = config["architecture"]
        self.arch = arch
        self.convs = nn.ModuleList()
        self.dense = nn.ModuleList()
        if arch == "linear":
            self.dense.append(nn.Linear(config["inputs"], config["num_classes"]))
        elif arch == "mlp":
            width = config["inputs"]
            for h in config["hidden"]:
                self.dense.append(nn.Linear(width, h))
                width = h
            self.dense.append(nn.Linear(width, config["num_classes"]))
        elif arch == "lenet":
            c1, c2 = config["conv1_channels"], config["conv2_channels"]
            self.shape = (1, config["height"], config["width"])
            self.convs.append(nn.Conv2d(1, c1, 5, padding=2))
            self.convs.append(nn.Conv2d(c1, c2, 5, padding=2))
            flat = c2 * (config["height"] // 4) * (config["width"] // 4)
            self.dense.append(nn.Linear(flat, config["fc1"]))
            self.dense.append(nn.Linear(config["fc1"], config["fc2"]))
            self.dense.append(nn.Linear(config["fc2"], config["num_classes"]))
        elif arch == "cifar-cnn":
            chans = [3, config["conv1_channels"], config["conv2_channels"], config["conv3_channels"]]
            self.shape = (3, 32, 32)
            for cin, cout in zip(chans, chans[1:]):
                self.convs.append(nn.Conv2d(cin, cout, 3, padding=1))
            self.dense.append(nn.Linear(chans[3] * 4 * 4, config["hidden"]))
            self.dense.append(nn.Linear(config["hidden"], config["num_classes"]))
        else:
            raise SystemExit(f"unknown architecture {arch!r}")

    def forward(self, x):
        if self.convs:
            x = x.reshape(x.shape[0], *self.shape)
            for conv in self.convs:
                x = F.max_pool2d(F.relu(conv(x)), 2)
            x = x.reshape(x.shape[0], -1)
        for layer in self.dense[:-1]:
            x = F.relu(layer(x))
        return self.dense[-1](x)

    def flat_parameters(self):
        """Parameters in the zoo's flat order: convolutions, then dense layers; weight, bias."""
        for layer in list(self.convs) + list(self.dense):
            yield layer.weight
            yield layer.bias


def load_weights(model, tensors, flat):
    offset = 0
    params = list(model.flat_parameters())
    if len(params) != len(tensors):
        raise SystemExit(f"model has {len(params)} tensors, the zoo spec {len(tensors)}")
    with torch.no_grad():
        for p, spec in zip(params, tensors):
            shape = spec["shape"]
            n = int(np.prod(shape))
            t = torch.from_numpy(flat[offset : offset + n].reshape(shape).copy())
            offset += n
            if p.dim() == 2:  # dense: burn [in, out] -> PyTorch [out, in]
                t = t.t()
            if tuple(t.shape) != tuple(p.shape):
                raise SystemExit(f"tensor {spec['name']}: zoo {shape}, PyTorch {list(p.shape)}")
            p.copy_(t)
    if offset != flat.size:
        raise SystemExit(f"weights file has {flat.size} values, the model {offset}")


def mean_loss(model, x, y, batch=512):
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = model(x[i : i + batch])
            total += F.cross_entropy(logits, y[i : i + batch], reduction="sum").item()
    model.train()
    return total / x.shape[0]


def train_epoch(model, opt, x, y, batch_size, gen):
    """One epoch as `train_local` runs it: shuffle, forward, loss read back, backward, step."""
    order = torch.randperm(x.shape[0], generator=gen).to(x.device)
    loss_sum = 0.0
    for i in range(0, x.shape[0], batch_size):
        idx = order[i : i + batch_size]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        value = loss.item()  # burn reads the loss every step too (divergence check)
        loss.backward()
        opt.step()
        loss_sum += value * idx.shape[0]
    return loss_sum / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", help="folder written by `flic bench train`")
    args = ap.parse_args()
    with open(os.path.join(args.workdir, "manifest.json")) as f:
        m = json.load(f)
    torch.set_num_threads(m["threads"])
    torch.manual_seed(m["seed"])
    gen = torch.Generator().manual_seed(m["seed"])

    n, d = m["samples"], m["feature_len"]
    x = torch.from_numpy(np.fromfile(os.path.join(args.workdir, "features.f32"), dtype="<f4").reshape(n, d))
    y = torch.from_numpy(np.fromfile(os.path.join(args.workdir, "labels.u32"), dtype="<u4").astype(np.int64))
    flat = np.fromfile(os.path.join(args.workdir, "weights.f32"), dtype="<f4")

    device = torch.device(m.get("device", "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("the manifest asks for CUDA, but torch.cuda.is_available() is False")
    model = ZooModel(m["config"])
    load_weights(model, m["tensors"], flat)
    model.to(device)
    x, y = x.to(device), y.to(device)
    initial_loss = mean_loss(model, x, y)
    if m["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=m["lr"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=m["lr"])

    for _ in range(m["warmup_epochs"]):
        train_epoch(model, opt, x, y, m["batch_size"], gen)
    started = time.perf_counter()
    losses = [train_epoch(model, opt, x, y, m["batch_size"], gen) for _ in range(m["epochs"])]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    where = "cpu" if device.type == "cpu" else f"cuda: {torch.cuda.get_device_name(device)}"

    json.dump(
        {
            "framework": "pytorch",
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "device": where,
            "initial_loss": initial_loss,
            "last_epoch_loss": losses[-1],
            "samples": n * m["epochs"],
            "seconds": elapsed,
            "samples_per_sec": n * m["epochs"] / elapsed,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
