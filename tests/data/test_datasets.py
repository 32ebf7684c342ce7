"""Dataset loaders on real files written in their on-disk formats, and the batched loader."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from compressor.data import ArraySplit, BatchLoader, list_datasets, load_dataset, random_crop_flip
from compressor.errors import CompressorError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


# ----------------------------------------------------------------------------------------------- helpers


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[bytes]:
    """Each sample as bytes (image + label), sorted: equal lists mean equal multisets of samples."""
    x = x.reshape(len(x), -1).contiguous()
    return sorted(x[i].numpy().tobytes() + int(y[i]).to_bytes(8, "little") for i in range(len(x)))


def _assert_partition(parts: list[ArraySplit], x: torch.Tensor, y: torch.Tensor) -> None:
    """The splits together hold exactly the samples (x, y), each once."""
    assert sum(len(p) for p in parts) == len(y)
    got = _rows(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    assert got == _rows(x, y)


def _one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


def _labels(n: int, num_classes: int) -> np.ndarray:
    return np.arange(n) % num_classes


# ----------------------------------------------------------------------------------------------- registry


def test_builtin_datasets_are_registered():
    names = list_datasets()
    for name in ("digits", "mnist", "fashion-mnist", "svhn", "cifar10", "cifar100", "tiny-imagenet"):
        assert name in names
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]


# ----------------------------------------------------------------------------------------------- digits


def test_digits_fixed_stratified_split():
    a = load_dataset("digits")
    b = load_dataset("digits", seed=5)  # the digits split is fixed whatever the seed
    assert (len(a.train), len(a.val), len(a.test)) == (1149, 288, 360)
    for name in ("train", "val", "test"):
        sa, sb = a.split(name), b.split(name)
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
        assert sa.x.dtype == torch.float32 and sa.x.shape[1:] == (1, 8, 8) and sa.y.dtype == torch.int64
        assert float(sa.x.min()) >= 0.0 and float(sa.x.max()) <= 1.0
    from sklearn.datasets import load_digits

    raw = load_digits()
    full_x = torch.from_numpy((raw.images / 16.0).astype(np.float32)).unsqueeze(1)
    _assert_partition([a.train, a.val, a.test], full_x, torch.from_numpy(raw.target))
    overall = np.bincount(raw.target, minlength=10) / len(raw.target)
    for split in (a.train, a.val, a.test):
        share = np.bincount(split.y.numpy(), minlength=10) / len(split)
        assert np.abs(share - overall).max() < 0.01
    # the validation size only moves samples between train and val: test is untouched
    c = load_dataset("digits", val_size=100)
    assert len(c.val) == 100 and torch.equal(c.test.x, a.test.x)
    _assert_partition([c.train, c.val], torch.cat([a.train.x, a.val.x]), torch.cat([a.train.y, a.val.y]))
    assert a.info.num_classes == 10 and a.info.input_shape == (1, 8, 8)


# ----------------------------------------------------------------------------------------------- CIFAR


def _pickle2(obj, path: Path, numpy1: bool = False) -> None:
    blob = pickle.dumps(obj, protocol=2)
    if numpy1:  # the name numpy < 2 (and the official files) use for the array constructor
        assert b"cnumpy._core.multiarray\n_reconstruct\n" in blob
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    path.write_bytes(blob)


def _write_cifar10(root: Path, per_batch: int = 20, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A real-format cifar-10-batches-py with 5 x `per_batch` training and `per_batch` test images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i in range(1, 7):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.permutation(_labels(per_batch, 10))
        name = f"data_batch_{i}" if i <= 5 else "test_batch"
        _pickle2({b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                  b"data": x.reshape(per_batch, 3072), b"filenames": [b"img%d.png" % k for k in range(per_batch)]},
                 folder / name, numpy1=i == 1)
        xs.append(x)
        ys.append(y)
    _pickle2({b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                     "horse", "ship", "truck")],
              b"num_cases_per_batch": per_batch, b"num_vis": 3072}, folder / "batches.meta")
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def test_cifar10_round_trip(tmp_path):
    x_train, y_train, x_test, y_test = _write_cifar10(tmp_path)
    b = load_dataset("cifar10", tmp_path, val_size=10, seed=3)
    assert b.test.x.dtype == torch.uint8 and b.test.x.shape == (20, 3, 32, 32)
    assert torch.equal(b.test.x, torch.from_numpy(x_test)) and torch.equal(b.test.y, torch.from_numpy(y_test))
    # CHW order: the first 1024 bytes of a row are the red plane, row-major
    row = x_test.reshape(20, 3072)[7]
    assert torch.equal(b.test.x[7, 0, 1, :], torch.from_numpy(row[32:64]))
    assert torch.equal(b.test.x[7, 2, 31, 31], torch.tensor(row[3071]))
    assert (len(b.train), len(b.val)) == (90, 10)
    assert sorted(b.val.y.tolist()) == list(range(10))  # stratified
    _assert_partition([b.train, b.val], torch.from_numpy(x_train), torch.from_numpy(y_train))
    assert b.info.name == "cifar10" and b.info.classes[0] == "airplane" and b.info.augment == "crop-flip"
    assert b.info.mean == (0.4914, 0.4822, 0.4465) and b.info.default_eps == pytest.approx(8 / 255)
    again = load_dataset("cifar10", tmp_path, val_size=10, seed=3)
    assert torch.equal(again.val.x, b.val.x)
    other = load_dataset("cifar10", tmp_path, val_size=10, seed=4)
    assert not torch.equal(other.val.x, b.val.x)


def test_cifar10_default_val_size_too_large_is_a_clear_error(tmp_path):
    _write_cifar10(tmp_path)
    with pytest.raises(CompressorError) as exc:
        load_dataset("cifar10", tmp_path)  # 5000 validation images from 100
    assert "`val_size`" in _one_line_error(exc)


def test_cifar100_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = {}
    for name, n in (("train", 200), ("test", 50)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = rng.permutation(_labels(n, 100))
        _pickle2({b"filenames": [b"f"] * n, b"batch_label": name.encode(), b"fine_labels": fine.tolist(),
                  b"coarse_labels": (fine // 5).tolist(), b"data": x.reshape(n, -1)}, folder / name)
        data[name] = (x, fine)
    fine_names = [f"thing_{i}".encode() for i in range(100)]
    _pickle2({b"fine_label_names": fine_names, b"coarse_label_names": [b"c"] * 20}, folder / "meta")
    b = load_dataset("cifar100", tmp_path, val_size=100)
    assert b.info.num_classes == 100 and b.info.classes[42] == "thing_42"
    assert torch.equal(b.test.x, torch.from_numpy(data["test"][0]))
    assert torch.equal(b.test.y, torch.from_numpy(data["test"][1]))
    assert (len(b.train), len(b.val)) == (100, 100)
    assert sorted(b.val.y.tolist()) == list(range(100))
    _assert_partition([b.train, b.val], torch.from_numpy(data["train"][0]), torch.from_numpy(data["train"][1]))


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("victim", ["data_batch_3", "test_batch", "batches.meta"])
def test_malicious_cifar_file_is_refused(tmp_path, victim):
    root = tmp_path / "root"
    _write_cifar10(root)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": [0]}, protocol=2)
    control = tmp_path / "control"  # the payload really does run code under plain pickle
    pickle.loads(pickle.dumps(_Evil(control), protocol=2))
    assert control.exists()
    (root / "cifar-10-batches-py" / victim).write_bytes(payload)
    with pytest.raises(CompressorError) as exc:
        load_dataset("cifar10", root, val_size=10)
    assert victim in _one_line_error(exc)
    assert not marker.exists()


def test_corrupt_cifar_batch_is_a_clear_error(tmp_path):
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(CompressorError) as exc:
        load_dataset("cifar10", tmp_path, val_size=10)
    assert "data_batch_2" in _one_line_error(exc)
    folder = tmp_path / "cifar-10-batches-py"
    _pickle2({b"data": np.zeros((4, 3072), np.uint8), b"labels": list(range(4))}, folder / "data_batch_2")
    _pickle2({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}, folder / "test_batch")
    with pytest.raises(CompressorError, match="labels"):
        load_dataset("cifar10", tmp_path, val_size=10)


# ----------------------------------------------------------------------------------------------- MNIST-style


def _write_idx(raw: Path, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    n, h, w = x.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, h, w) + x.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + y.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name,folder,eps", [("mnist", "MNIST", 0.3), ("fashion-mnist", "FashionMNIST", 0.1)])
def test_mnist_style_idx_files(tmp_path, name, folder, eps):
    rng = np.random.default_rng(2)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    x_train = rng.integers(0, 256, (60, 28, 28), dtype=np.uint8)
    y_train = rng.permutation(_labels(60, 10))
    x_test = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_test = _labels(20, 10)
    _write_idx(raw, "train", x_train, y_train)
    _write_idx(raw, "t10k", x_test, y_test)
    b = load_dataset(name, tmp_path, val_size=10)
    assert b.test.x.dtype == torch.uint8 and b.test.x.shape == (20, 1, 28, 28)
    assert torch.equal(b.test.x[:, 0], torch.from_numpy(x_test))
    assert torch.equal(b.test.y, torch.from_numpy(y_test))
    assert (len(b.train), len(b.val)) == (50, 10)
    _assert_partition([b.train, b.val], torch.from_numpy(x_train)[:, None], torch.from_numpy(y_train))
    assert b.info.name == name and b.info.input_shape == (1, 28, 28) and b.info.default_eps == eps
    assert b.info.augment == "none"


def test_svhn_corrupt_file_is_a_clear_error(tmp_path):
    from scipy.io import savemat

    for split in ("train", "test"):  # right names, wrong contents: torchvision's MD5 check refuses them
        savemat(tmp_path / f"{split}_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(CompressorError) as exc:
        load_dataset("svhn", tmp_path)
    msg = _one_line_error(exc)
    assert "SVHN" in msg and "train_32x32.mat" in msg


# ----------------------------------------------------------------------------------------------- Tiny-ImageNet


def _tiny_tree(root: Path, val_layout: str) -> dict:
    """A 3-class tiny-imagenet-200 tree; train PNGs plus one JPEG, val in either layout."""
    rng = np.random.default_rng(3)
    folder = root / "tiny-imagenet-200"
    wnids = ["n003", "n001", "n002"]  # wnids.txt is not sorted; labels follow sorted folder names
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("n001\tgoldfish, Carassius auratus\nn002\tsalamander\nn003\tfrog, toad\n")
    train = {}
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True)
        (folder / "train" / w / f"{w}_boxes.txt").write_text("ignored\n")
        for k in range(4):
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            path = d / f"{w}_{k}.png"
            Image.fromarray(img).save(path)
            train[path.name] = (img, w)
    Image.fromarray(train["n002_0.png"][0]).save(folder / "train" / "n002" / "images" / "n002_9.JPEG")
    val = {}
    lines = []
    for k in range(6):
        w = sorted(wnids)[k % 3]
        img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        if val_layout == "annotations":
            d = folder / "val" / "images"
            lines.append(f"val_{k}.png\t{w}\t0\t0\t63\t63")
        else:
            d = folder / "val" / w
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"val_{k}.png")
        val[f"val_{k}"] = (img, w)
    if lines:
        (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return {"train": train, "val": val, "jpeg": folder / "train" / "n002" / "images" / "n002_9.JPEG"}


@pytest.mark.parametrize("val_layout", ["annotations", "folders"])
def test_tiny_imagenet(tmp_path, val_layout):
    tree = _tiny_tree(tmp_path, val_layout)
    b = load_dataset("tiny-imagenet", tmp_path, val_size=3)
    idx = {"n001": 0, "n002": 1, "n003": 2}
    assert b.info.classes == ("goldfish", "salamander", "frog") and b.info.num_classes == 3
    assert b.info.input_shape == (3, 64, 64) and b.info.augment == "crop-flip"
    val_items = list(tree["val"].values())
    exp_test_x = torch.stack([torch.from_numpy(img).permute(2, 0, 1) for img, _ in val_items])
    exp_test_y = torch.tensor([idx[w] for _, w in val_items])
    assert b.test.x.dtype == torch.uint8 and b.test.x.shape == (6, 3, 64, 64)
    assert _rows(b.test.x, b.test.y) == _rows(exp_test_x, exp_test_y)
    jpeg = torch.from_numpy(np.array(Image.open(tree["jpeg"]).convert("RGB"))).permute(2, 0, 1)
    items = [(torch.from_numpy(img).permute(2, 0, 1), idx[w]) for img, w in tree["train"].values()]
    items.append((jpeg, idx["n002"]))
    exp_x = torch.stack([x for x, _ in items])
    exp_y = torch.tensor([y for _, y in items])
    assert (len(b.train), len(b.val)) == (10, 3) and sorted(b.val.y.tolist()) == [0, 1, 2]
    _assert_partition([b.train, b.val], exp_x, exp_y)


def test_tiny_imagenet_has_no_download(tmp_path):
    with pytest.raises(CompressorError) as exc:
        load_dataset("tiny-imagenet", tmp_path, download=True)
    assert "download" in _one_line_error(exc)


# ----------------------------------------------------------------------------------------------- npz


def _npz_data(n: int = 100, channels: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, channels, 8, 8), dtype=np.uint8),
            rng.permutation(_labels(n, 5)).astype(np.int64))


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npz_x_y(tmp_path, layout):
    x, y = _npz_data(channels=1 if layout == "nhw" else 3)
    stored = {"nchw": x, "nhwc": x.transpose(0, 2, 3, 1), "nhw": x[:, 0]}[layout]
    path = tmp_path / "d.npz"
    np.savez(path, x=stored, y=y)
    b = load_dataset(f"npz:{path}", seed=1)
    assert (len(b.train), len(b.val), len(b.test)) == (72, 8, 20)
    _assert_partition([b.train, b.val, b.test], torch.from_numpy(x), torch.from_numpy(y))
    assert sorted(b.test.y.tolist()) == sorted(_labels(20, 5).tolist())  # stratified
    c, _, _ = b.info.input_shape
    assert b.info.input_shape == (x.shape[1], 8, 8) and b.info.num_classes == 5 and b.info.augment == "none"
    assert b.info.default_eps == pytest.approx(8 / 255 if c == 3 else 0.1)
    assert b.info.mean == pytest.approx(tuple(b.train.float_images().mean(dim=(0, 2, 3)).tolist()), abs=1e-4)
    assert "20%" in b.info.notes
    again = load_dataset(f"npz:{path}", seed=1)
    assert torch.equal(again.test.x, b.test.x) and torch.equal(again.val.y, b.val.y)
    assert not torch.equal(load_dataset(f"npz:{path}", seed=2).test.x, b.test.x)


def test_npz_train_test_keys_and_relative_path(tmp_path):
    x, y = _npz_data(60)
    xt, yt = _npz_data(15, seed=1)
    np.savez(tmp_path / "tt.npz", x_train=x.transpose(0, 2, 3, 1), y_train=y, x_test=xt, y_test=yt)
    b = load_dataset("npz:tt.npz", tmp_path, val_size=10)  # relative: found under --data-root
    assert torch.equal(b.test.x, torch.from_numpy(xt)) and torch.equal(b.test.y, torch.from_numpy(yt))
    assert (len(b.train), len(b.val)) == (50, 10)
    _assert_partition([b.train, b.val], torch.from_numpy(x), torch.from_numpy(y))


def test_npz_train_test_pair(tmp_path):
    x, y = _npz_data(60)
    xt, yt = _npz_data(15, seed=1)
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=xt, y=yt)
    b = load_dataset("npz:train.npz, test.npz", tmp_path, val_size=10, seed=3)  # relative: under --data-root
    assert torch.equal(b.test.x, torch.from_numpy(xt)) and torch.equal(b.test.y, torch.from_numpy(yt))
    assert (len(b.train), len(b.val)) == (50, 10) and "carved" in b.info.notes
    _assert_partition([b.train, b.val], torch.from_numpy(x), torch.from_numpy(y))  # validation from train only
    for spec, needle in ((f"npz:{tmp_path / 'train.npz'},", "two files"),
                         (f"npz:{tmp_path / 'train.npz'},{tmp_path / 'train.npz'}", "both the training and the test"),
                         (f"npz:{tmp_path / 'train.npz'},{tmp_path / 'none.npz'}", "no file")):
        with pytest.raises(CompressorError) as exc:
            load_dataset(spec)
        assert needle in _one_line_error(exc)
    np.savez(tmp_path / "tt.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    with pytest.raises(CompressorError, match="the test file"):
        load_dataset(f"npz:{tmp_path / 'train.npz'},{tmp_path / 'tt.npz'}")


@pytest.mark.parametrize("contents,needle", [
    (None, "no file"),
    ({"images": np.zeros((4, 1, 8, 8), np.uint8), "y": np.zeros(4, np.int64)}, "keys"),
    ({"x": np.zeros((4, 1, 8, 8), np.int32), "y": np.zeros(4, np.int64)}, "uint8"),
    ({"x": np.zeros((4, 64), np.uint8), "y": np.zeros(4, np.int64)}, "shape"),
    ({"x": np.zeros((4, 5, 8, 8), np.uint8), "y": np.zeros(4, np.int64)}, "channels"),
    ({"x": np.zeros((4, 1, 8, 8), np.uint8), "y": np.zeros(3, np.int64)}, "3 labels for 4 images"),
    ({"x": np.zeros((4, 1, 8, 8), np.uint8), "y": np.zeros(4, np.float32)}, "integer"),
])
def test_npz_errors(tmp_path, contents, needle):
    path = tmp_path / "bad.npz"
    if contents is not None:
        np.savez(path, **contents)
    with pytest.raises(CompressorError) as exc:
        load_dataset(f"npz:{path}")
    assert needle in _one_line_error(exc)


@pytest.mark.skipif(not (SHARED_DATA / "mnist_test.npz").is_file(), reason="../shared/data is not present")
def test_npz_on_shared_mnist():
    b = load_dataset(f"npz:{SHARED_DATA / 'mnist_test.npz'}")
    assert (len(b.train), len(b.val), len(b.test)) == (7200, 800, 2000)
    assert b.info.input_shape == (1, 28, 28) and b.info.num_classes == 10 and b.info.default_eps == 0.1
    assert 0.11 < b.info.mean[0] < 0.15 and 0.28 < b.info.std[0] < 0.33


# ----------------------------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name,layout", [
    ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"), ("mnist", "MNIST/raw"),
    ("fashion-mnist", "FashionMNIST/raw"), ("svhn", "train_32x32.mat"), ("tiny-imagenet", "tiny-imagenet-200"),
])
def test_missing_data_names_layout_and_download(tmp_path, name, layout):
    with pytest.raises(CompressorError) as exc:
        load_dataset(name, tmp_path / "nowhere")
    msg = _one_line_error(exc)
    assert layout in msg and "`download`" in msg and str(tmp_path / "nowhere") in msg
    with pytest.raises(CompressorError) as exc:
        load_dataset(name, None)
    assert "`data_root`" in _one_line_error(exc)


# ----------------------------------------------------------------------------------------------- BatchLoader


def _id_split(n: int) -> ArraySplit:
    """Images whose pixels encode their index, labels equal to the index."""
    x = (torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1) % 251).expand(n, 3, 4, 4).contiguous()
    return ArraySplit(x, torch.arange(n))


def _epoch_ids(loader: BatchLoader, epoch: int) -> list[int]:
    loader.set_epoch(epoch)
    return torch.cat([y for _, y in loader]).tolist()


def test_batch_loader_epochs():
    split = _id_split(50)
    loader = BatchLoader(split, 7, shuffle=True, seed=3)
    assert len(loader) == 8
    first = _epoch_ids(loader, 0)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert _epoch_ids(BatchLoader(split, 7, shuffle=True, seed=3), 0) == first
    assert _epoch_ids(loader, 1) != first and sorted(_epoch_ids(loader, 1)) == list(range(50))
    assert _epoch_ids(BatchLoader(split, 7, shuffle=True, seed=4), 0) != first
    for x, y in BatchLoader(split, 16):  # images stay paired with labels, in [0, 1]
        assert x.dtype == torch.float32 and torch.allclose(x[:, 0, 0, 0] * 255, y.float())
    assert _epoch_ids(BatchLoader(split, 7), 5) == list(range(50))
    dropped = BatchLoader(split, 7, shuffle=True, drop_last=True)
    assert len(dropped) == 7 and len(_epoch_ids(dropped, 0)) == 49


@pytest.mark.parametrize("n,world", [(50, 2), (51, 2), (3, 4), (10, 3), (1, 4), (2, 5)])
def test_batch_loader_shards(n, world):
    split = _id_split(n)
    shards = [_epoch_ids(BatchLoader(split, 4, shuffle=True, seed=1, rank=r, world_size=world), 2)
              for r in range(world)]
    per_rank = -(-n // world)
    for r in range(world):  # equal shards, and len() tells the truth
        assert len(shards[r]) == per_rank
        assert len(BatchLoader(split, 4, rank=r, world_size=world)) == -(-per_rank // 4)
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(n))  # cover everything
    assert len(flat) - n == per_rank * world - n  # overlap is only the wrap-around padding
    if n % world == 0:
        assert len(set(flat)) == len(flat)  # disjoint


def _candidates(img: torch.Tensor, padding: int = 4) -> list[torch.Tensor]:
    h, w = img.shape[1:]
    padded = TF.pad(img, [padding])
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = TF.crop(padded, dy, dx, h, w)
            out += [crop, TF.hflip(crop)]
    return out


def test_random_crop_flip_matches_torchvision():
    x = torch.rand(6, 3, 10, 12)
    gen = torch.Generator().manual_seed(7)
    out = random_crop_flip(x, generator=gen)
    replay = torch.Generator().manual_seed(7)  # the same draws, in the documented order
    off_y = torch.randint(0, 9, (6, 1, 1), generator=replay).flatten()
    off_x = torch.randint(0, 9, (6, 1, 1), generator=replay).flatten()
    flip = torch.rand(6, generator=replay) < 0.5
    for i in range(6):
        exp = TF.crop(TF.pad(x[i], [4]), int(off_y[i]), int(off_x[i]), 10, 12)
        if flip[i]:
            exp = TF.hflip(exp)
        assert torch.equal(out[i], exp)
    assert out.shape == x.shape
    same = random_crop_flip(torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).view(4, 3, 8, 8), padding=0,
                            generator=torch.Generator().manual_seed(0))
    ref = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).view(4, 3, 8, 8)
    for i in range(4):  # no padding: each sample is itself or its mirror image
        assert torch.equal(same[i], ref[i]) or torch.equal(same[i], ref[i].flip(-1))


def test_batch_loader_crop_flip_is_a_per_sample_crop_flip():
    torch.manual_seed(0)
    split = ArraySplit(torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8), torch.arange(16))
    loader = BatchLoader(split, 8, shuffle=True, augment="crop-flip", seed=2)
    batches = list(loader)
    flips = 0
    for x, y in batches:
        for img, label in zip(x, y):
            orig = split.x[label].float() / 255
            matches = [k for k, c in enumerate(_candidates(orig)) if torch.equal(img, c)]
            assert matches, "augmented image is not a crop/flip of its source"
            flips += matches[0] % 2
    assert 0 < flips < 16  # both flipped and unflipped samples occur
    again = list(BatchLoader(split, 8, shuffle=True, augment="crop-flip", seed=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([x for x, _ in loader]), torch.cat([x for x, _ in batches]))
