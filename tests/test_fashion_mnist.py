"""Fashion-MNIST IDX files: reading, the search order, clear errors."""
import gzip

import numpy as np
import pytest

from rear.data import fashion_mnist as fm


def write_idx(path, array, compress):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_fashion_mnist(folder, train=64, test=32, compress=True, seed=0):
    """Four IDX files of random 28x28 images, labels cycling over the 10 classes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("test", test)):
        images_stem, labels_stem = fm.FILES[split]
        write_idx(folder / images_stem, rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(folder / labels_stem, np.arange(n) % 10, compress)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_reads_idx_files(tmp_path, compress):
    fake_fashion_mnist(tmp_path, compress=compress)
    images, labels = fm.load_fashion_mnist("train", tmp_path)
    assert images.shape == (64, 28, 28) and images.dtype == np.uint8 and labels[:11].tolist() == list(range(10)) + [0]
    x = fm.to_tensor(images)
    assert x.shape == (64, 1, 32, 32) and x[:, :, :2].max() == 0 and x[:, :, :, -2:].max() == 0


def test_search_order(tmp_path, monkeypatch):
    a, b = fake_fashion_mnist(tmp_path / "a", train=10), fake_fashion_mnist(tmp_path / "b", train=20)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "none")
    monkeypatch.setenv("REAR_DATA", str(b))
    assert len(fm.load_fashion_mnist("train")[0]) == 20
    assert len(fm.load_fashion_mnist("train", a)[0]) == 10  # --data-dir wins


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setattr(fm, "CACHE_DIR", tmp_path / "none")
    monkeypatch.delenv("REAR_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist("train", allow_download=False)
    with pytest.raises(FileNotFoundError, match="does not hold the four"):
        fm.load_fashion_mnist("train", tmp_path)


def test_download_verifies_checksums(tmp_path, monkeypatch):
    """Served files whose contents differ from Fashion-MNIST's are rejected, and nothing is kept."""
    import io

    import rear.download

    monkeypatch.setattr(rear.download.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"not the real file"))
    with pytest.raises(OSError, match=r"github.com.*not a complete gzip file.*s3-website.*not a complete gzip"):
        fm.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_takes_the_first_mirror_that_serves_the_right_bytes(tmp_path, monkeypatch):
    import io
    import urllib.error

    import rear.download

    source = fake_fashion_mnist(tmp_path / "source", train=20, test=10)
    monkeypatch.setattr(fm, "SHA256", {stem: rear.download.sha256(source / f"{stem}.gz", gzip.open) for stem in fm.SHA256})
    served = []

    def mirror(url, timeout):
        served.append(url)
        if "github" in url:
            raise urllib.error.URLError("timed out")  # a stalled HTTPS mirror
        return io.BytesIO((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(rear.download.urllib.request, "urlopen", mirror)
    fm.download(tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(f"{stem}.gz" for stem in fm.SHA256)
    assert len(served) == 8 and fm.load_fashion_mnist("test", tmp_path / "cache")[0].shape == (10, 28, 28)


def test_truncated_idx_is_refused(tmp_path):
    fake_fashion_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        fm.load_fashion_mnist("train", tmp_path)


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        fm.load_fashion_mnist("validation", tmp_path)


def test_a_download_has_a_deadline_and_a_size_cap(tmp_path):
    """A server dripping bytes, or sending far more than expected, is abandoned; nothing is left behind."""
    import http.server
    import threading
    import time

    from rear.download import fetch

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            if self.path == "/drip":
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            else:
                self.wfile.write(b"y" * 300_000)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        began = time.monotonic()
        with pytest.raises(OSError, match="still unfinished after 0.5 s"):
            fetch([f"{base}/drip"], tmp_path / "a.bin", lambda p: None, deadline=0.5)
        assert time.monotonic() - began < 2
        with pytest.raises(OSError, match="larger than 100,000 bytes"):
            fetch([f"{base}/big"], tmp_path / "b.bin", lambda p: None, max_bytes=100_000)
        assert fetch([f"{base}/big"], tmp_path / "c.bin", lambda p: None).stat().st_size == 300_000
    finally:
        server.shutdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin"]
