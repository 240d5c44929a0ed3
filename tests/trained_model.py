"""A small classifier trained on real labelled images, for accuracy figures that random weights cannot give.

The data: scikit-learn's handwritten digits (1797 8x8 greyscale images, 10 classes), upscaled to 256x256 RGB
JPEGs so that the whole deployment path (decoding, resizing, fast decoding) has real work to do. A torchvision
resnet18 with a 10-class head is trained on 32x32 inputs through torchvision's own transforms (the tutorial
way), saved with ``torch.save(model.state_dict())``, and cached under ``$TVDEPLOY_CACHE/trained`` (default
``~/.cache/tvdeploy/trained``) so that it is trained once per machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = [str(d) for d in range(10)]
#: The preprocessing the model is trained and exported with (the CLI's --resize-size/--crop-size overrides).
RESIZE, CROP = 32, 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VERSION = "v2"


@dataclass(frozen=True)
class TrainedDigits:
    """Paths of the cached model and its data."""

    checkpoint: Path
    labels: Path
    train_dir: Path
    test_dir: Path
    test_labels: list[int]


def _cache_root(epochs: int) -> Path:
    base = Path(os.environ.get("TVDEPLOY_CACHE", Path.home() / ".cache" / "tvdeploy"))
    return base / "trained" / f"digits-resnet18-{VERSION}-e{epochs}"


def _write_images(root: Path, images: np.ndarray, targets: np.ndarray) -> list[int]:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    for index, (pixels, target) in enumerate(zip(images, targets, strict=True)):
        grey = Image.fromarray((pixels * (255.0 / 16.0)).astype(np.uint8), mode="L")
        grey.resize((256, 256), Image.Resampling.BICUBIC).convert("RGB").save(
            root / f"{index:04d}-{target}.jpg", quality=95
        )
    return [int(t) for t in targets]


def _transforms():
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(RESIZE, antialias=True),
        transforms.CenterCrop(CROP),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])  # fmt: skip


def _train(train_dir: Path, checkpoint: Path, epochs: int = 5, seed: int = 0) -> None:
    import torch
    from PIL import Image
    from torchvision import models

    torch.manual_seed(seed)
    transform = _transforms()
    files = sorted(train_dir.glob("*.jpg"))
    inputs = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    targets = torch.tensor([int(f.stem.split("-")[1]) for f in files])
    model = models.resnet18(num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(files), generator=generator)
        for start in range(0, len(files), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
    torch.save(model.eval().state_dict(), checkpoint)


def trained_digits(epochs: int = 5) -> TrainedDigits:
    """The cached trained model and its data, made on first use (5 epochs: about a minute on two cores;
    the default test run trains 2, about half that)."""
    from sklearn.datasets import load_digits

    root = _cache_root(epochs)
    digits = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(digits.target))
    test_index, train_index = order[:360], order[360:]
    train_dir, test_dir = root / "train", root / "test"
    checkpoint, labels = root / "resnet18_digits.pt", root / "labels.txt"
    if not checkpoint.is_file():
        partial = root.with_name(root.name + ".partial")
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
        _write_images(partial / "train", digits.images[train_index], digits.target[train_index])
        _write_images(partial / "test", digits.images[test_index], digits.target[test_index])
        (partial / "labels.txt").write_text("\n".join(LABELS) + "\n")
        _train(partial / "train", partial / "resnet18_digits.pt", epochs=epochs)
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
    test_labels = [int(t) for t in digits.target[test_index]]
    return TrainedDigits(checkpoint, labels, train_dir, test_dir, test_labels)


def eager_accuracy(data: TrainedDigits) -> tuple[float, list[int]]:
    """The tutorial pipeline: the state dict in a torchvision resnet18, torchvision transforms, argmax."""
    import torch
    from PIL import Image
    from torchvision import models

    model = models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(data.checkpoint, weights_only=True))
    transform = _transforms()
    files = sorted(data.test_dir.glob("*.jpg"))
    with torch.inference_mode():
        batch = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
        predicted = model.eval()(batch).argmax(dim=1).tolist()
    return float(np.mean(np.array(predicted) == np.array(data.test_labels))), predicted


def artifact_accuracy(artifact: Path, data: TrainedDigits, decode: str = "exact") -> tuple[float, list[int]]:
    """Held-out accuracy of an artifact through the runtime (decode, preprocess, run, top-1)."""
    from tvdeploy.runtime import load

    files = sorted(data.test_dir.glob("*.jpg"))
    with load(artifact, batch_size=32, decode=decode) as clf:
        predicted = [row[0].index for row in clf.predict(files, top_k=1)]
    return float(np.mean(np.array(predicted) == np.array(data.test_labels))), predicted
