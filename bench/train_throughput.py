"""Training throughput: this repo's trainer vs a seed-style PNG DataLoader pipeline.

Same subset, same model (LeNet), same batch (64), Adam, one process, one epoch each:
  (a) engine.train_epoch: batches sliced from the decoded uint8 tensor, converted per batch;
  (b) the original project's way: a DataLoader over the PNG files listed in the index,
      PIL decode + ToTensor + Normalize per sample, num_workers=0.

    python bench/train_throughput.py                 # 10,000 samples of data/train.txt
    python bench/train_throughput.py --samples 60000 --threads 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision import transforms  # noqa: E402

from dataset import DATA_DIR, MNIST_MEAN, MNIST_STD, IndexDataset, read_index  # noqa: E402
from engine import place_model, train_epoch  # noqa: E402
from models import build_model  # noqa: E402


class PngFolderDataset(Dataset):
    """The seed's pipeline: decode each PNG from disk on every access."""

    def __init__(self, samples):
        self.samples = samples
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        return self.transform(Image.open(s.path).convert("L")), s.label


WARMUP = 640  # samples trained before timing starts: first calls pay one-off kernel set-up


def bench_trainer(images, labels, batch_size, seed):
    torch.manual_seed(seed)
    model = place_model(build_model("lenet"), torch.device("cpu"))  # as train_kfold.py places it
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    warm = torch.arange(min(WARMUP, len(labels)))
    train_epoch(model, opt, images, labels, warm, batch_size, torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    train_epoch(model, opt, images, labels, torch.arange(len(labels)), batch_size, torch.Generator().manual_seed(seed))
    return len(labels) / (time.perf_counter() - start)


def bench_dataloader(samples, batch_size, seed):
    torch.manual_seed(seed)
    model = build_model("lenet").train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(PngFolderDataset(samples), batch_size=batch_size, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        if seen == WARMUP:  # same warm-up as (a)
            start = time.perf_counter()
        seen += len(y)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (len(samples) - min(WARMUP, len(samples))) / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", default=str(DATA_DIR / "train.txt"), help="training index (default: data/train.txt)")
    p.add_argument("--samples", type=int, default=10_000, help="first N samples of the index (default: 10000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats; medians are reported (default: 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = IndexDataset(args.index)
    n = min(args.samples, len(ds))
    samples = read_index(args.index)[:n]
    images, labels = ds.images[:n], ds.labels[:n]
    print(f"{n} samples, batch {args.batch_size}, LeNet, Adam, {args.threads} thread(s), "
          f"1 epoch each, {args.repeats} alternating repeats")
    a, b = [], []
    for r in range(args.repeats):  # alternated, so a busy moment of the machine hits both alike
        a.append(bench_trainer(images, labels, args.batch_size, r))
        b.append(bench_dataloader(samples, args.batch_size, r))
        print(f"  repeat {r + 1}: (a) {a[-1]:7.0f}  (b) {b[-1]:7.0f} samples/s  ratio {a[-1] / b[-1]:.2f}x")
    a_med, b_med = statistics.median(a), statistics.median(b)
    print(f"(a) this trainer (sliced uint8 batches):      {a_med:9.0f} samples/s (median)")
    print(f"(b) seed-style DataLoader over PNG files:     {b_med:9.0f} samples/s (median)")
    print(f"ratio (a)/(b): {a_med / b_med:.2f}x")


if __name__ == "__main__":
    main()
