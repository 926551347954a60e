"""Image folders, views and the pretokenized store."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from rear.data.folder import ImageFolder, center_crop
from rear.data.sources import Source, folder_source
from rear.data.store import TokenStore, flip_views, pretokenize, ten_crop_views
from conftest import PatchTokenizer


def memory_source(n=10, channels=1, fail_at=None):
    torch.manual_seed(1)
    images, labels = torch.rand(n, channels, 12, 12), torch.arange(n) % 3

    def read(start, stop, size):
        if fail_at is not None and start >= fail_at:
            raise KeyboardInterrupt  # a run killed part way
        c = (12 - size) // 2
        return images[start:stop, :, c : c + size, c : c + size], labels[start:stop], []

    return Source("memory:test", n, ["a", "b", "c"], read), images, labels


def test_views():
    x = torch.arange(2 * 1 * 9 * 9, dtype=torch.float).view(2, 1, 9, 9)
    flips = flip_views(x)
    assert flips.shape == (2, 2, 1, 9, 9) and torch.equal(flips[:, 1], x.flip(-1))
    crops = ten_crop_views(x, 8)
    assert crops.shape == (2, 10, 1, 8, 8)
    assert torch.equal(crops[:, 0], x[..., :8, :8]) and torch.equal(crops[:, 3], x[..., 1:, 1:])
    assert torch.equal(crops[:, 5], crops[:, 0].flip(-1))


def test_store_round_trip_and_memory_map(tmp_path):
    tokenizer = PatchTokenizer()
    source, images, labels = memory_source()
    pretokenize(source, tokenizer, tmp_path / "s", tokenizer_path="patch", batch_size=4, progress=False)
    store = TokenStore(tmp_path / "s")
    assert len(store) == 10 and store.num_views == 2 and store.num_classes == 3
    assert isinstance(store.codes, np.memmap) and store.codes.dtype == np.uint16
    crops = images[:, :, 2:10, 2:10]
    tokens, got_labels = store.batch(np.array([7, 2]), np.array([1, 0]))
    assert torch.equal(tokens[0], tokenizer.encode(crops[7:8].flip(-1))[0])
    assert torch.equal(tokens[1], tokenizer.encode(crops[2:3])[0])
    assert got_labels.tolist() == [labels[7].item(), labels[2].item()]
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["tokenizer"]["fingerprint"] == tokenizer.fingerprint()
    assert manifest["grid"] == [2, 2] and manifest["codebook_size"] == 16 and manifest["class_names"] == ["a", "b", "c"]


def test_store_without_flips_holds_one_view(tmp_path):
    tokenizer = PatchTokenizer()
    source, images, _ = memory_source()
    pretokenize(source, tokenizer, tmp_path / "s", tokenizer_path="patch", flip=False, progress=False)
    store = TokenStore(tmp_path / "s")
    assert store.num_views == 1 and store.codes.shape == (10, 1, 4)
    tokens, _ = store.batch(np.array([3]), np.array([0]))
    assert torch.equal(tokens[0], tokenizer.encode(images[3:4, :, 2:10, 2:10])[0])


def test_interrupted_run_resumes_to_the_same_store(tmp_path):
    tokenizer = PatchTokenizer()
    pretokenize(memory_source()[0], tokenizer, tmp_path / "straight", tokenizer_path="patch", batch_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        pretokenize(memory_source(fail_at=4)[0], tokenizer, tmp_path / "resumed", tokenizer_path="patch", batch_size=4, progress=False)
    with pytest.raises(ValueError, match="unfinished"):
        TokenStore(tmp_path / "resumed")
    pretokenize(memory_source()[0], tokenizer, tmp_path / "resumed", tokenizer_path="patch", batch_size=4, progress=False)
    a, b = TokenStore(tmp_path / "straight"), TokenStore(tmp_path / "resumed")
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.labels, b.labels)


def test_resume_with_another_tokenizer_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        pretokenize(memory_source(fail_at=4)[0], PatchTokenizer(seed=0), tmp_path / "s", tokenizer_path="patch", batch_size=4, progress=False)
    with pytest.raises(ValueError, match="unfinished store of other settings"):
        pretokenize(memory_source()[0], PatchTokenizer(seed=1), tmp_path / "s", tokenizer_path="patch", batch_size=4, progress=False)


def test_complete_store_is_not_overwritten(tmp_path):
    pretokenize(memory_source()[0], PatchTokenizer(), tmp_path / "s", tokenizer_path="patch", progress=False)
    before = (tmp_path / "s" / "codes.npy").read_bytes()
    with pytest.raises(FileExistsError, match="complete store"):
        pretokenize(memory_source()[0], PatchTokenizer(), tmp_path / "s", tokenizer_path="patch", progress=False)
    assert (tmp_path / "s" / "codes.npy").read_bytes() == before


def test_store_of_another_tokenizer_is_refused(tmp_path):
    pretokenize(memory_source()[0], PatchTokenizer(seed=0), tmp_path / "s", tokenizer_path="patch", progress=False)
    store = TokenStore(tmp_path / "s")
    store.check_tokenizer(PatchTokenizer(seed=0).fingerprint())
    with pytest.raises(ValueError, match="was made by tokenizer patch"):
        store.check_tokenizer(PatchTokenizer(seed=1).fingerprint())


def test_mismatched_manifest_is_refused(tmp_path):
    pretokenize(memory_source()[0], PatchTokenizer(), tmp_path / "s", tokenizer_path="patch", progress=False)
    path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "num_tokens": 5}))
    with pytest.raises(ValueError, match="do not match the manifest"):
        TokenStore(tmp_path / "s")
    with pytest.raises(FileNotFoundError, match="not a token store"):
        TokenStore(tmp_path)


def make_folder(root, broken=()):
    for c, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((np.random.rand(20, 30, 3) * 255).astype(np.uint8)).save(root / name / f"{i}.png")
    for name in broken:
        (root / "dogs" / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")


def test_folder_source_skips_unreadable_files_with_a_warning(tmp_path):
    make_folder(tmp_path / "data", broken=["bad.png"])
    source = folder_source(tmp_path / "data", channels=1, workers=0)
    assert source.num_items == 7 and source.class_names == ["cats", "dogs"]
    with pytest.warns(UserWarning, match="skipped 1 unreadable image file.*bad.png"):
        pretokenize(source, PatchTokenizer(), tmp_path / "s", tokenizer_path="patch", progress=False)
    store = TokenStore(tmp_path / "s")
    assert len(store) == 6 and sorted(store.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_strict_run_fails_on_unreadable_files(tmp_path):
    make_folder(tmp_path / "data", broken=["bad.png"])
    with pytest.raises(ValueError, match="1 unreadable image file"):
        pretokenize(folder_source(tmp_path / "data", 1, workers=0), PatchTokenizer(), tmp_path / "s",
                    tokenizer_path="patch", strict=True, progress=False)


def test_empty_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(tmp_path / "empty", 8)
    (tmp_path / "empty" / "cats").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolder(tmp_path / "empty", 8)


def test_adm_center_crop():
    image = Image.fromarray((np.random.rand(100, 300, 3) * 255).astype(np.uint8))
    cropped = center_crop(image, 32)  # BOX-halved once to 150x50, then bicubic to 96x32, then cropped
    assert cropped.size == (32, 32)


def test_wrong_image_size_is_refused():
    with pytest.raises(ValueError, match=r"takes images \[B, 1, 8, 8\]"):
        PatchTokenizer().encode(torch.rand(2, 1, 9, 9))
