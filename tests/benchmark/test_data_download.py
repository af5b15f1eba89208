"""Download, checksum and archive handling, against a local HTTP server (no network needed)."""
import functools
import hashlib
import http.server
import socket
import threading
import time
import zipfile

import pytest

import benchmark.data as data
from benchmark.data.download import extract_zip, fetch
from benchmark.data.errors import ChecksumMismatchError, CorruptFileError, DatasetUnavailableError
from benchmark.data.synthetic import SynthConfig, write_medmnist


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Truncating(_Quiet):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"only ten b")


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def served(tmp_path):
    """(folder served over HTTP, its base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server, url = _serve(functools.partial(_Quiet, directory=str(folder)))
    yield folder, url
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port_url():
    """A URL on localhost where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/pathmnist_224.npz"


def _md5(payload: bytes) -> str:
    return hashlib.md5(payload).hexdigest()


def test_fetch_downloads_and_verifies(served, tmp_path):
    folder, url = served
    (folder / "f.bin").write_bytes(b"payload")
    dest = tmp_path / "raw" / "f.bin"
    assert fetch(f"{url}/f.bin", dest, md5=_md5(b"payload")) == dest
    assert dest.read_bytes() == b"payload"
    sha = hashlib.sha256(b"payload").hexdigest()
    assert fetch("http://127.0.0.1:9/unused", dest, sha256=sha) == dest  # present and valid: no request


def test_corrupt_download_is_reported_and_never_kept(served, tmp_path):
    folder, url = served
    (folder / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "f.bin"
    for attempt in range(2):  # a second quarantined copy never overwrites the first
        with pytest.warns(UserWarning, match="corrupt"), pytest.raises(ChecksumMismatchError) as err:
            fetch(f"{url}/f.bin", dest, md5=_md5(b"payload"))
        message = str(err.value)
        assert _md5(b"tampered") in message and _md5(b"payload") in message and str(dest) in message
        assert "--accept-checksum-mismatch" in message
    assert not dest.exists() and [p.read_bytes() for p in tmp_path.glob("f.bin.corrupt-*")] == [b"tampered"] * 2
    with pytest.warns(UserWarning, match="accepted"):
        fetch(f"{url}/f.bin", dest, md5=_md5(b"payload"), accept_mismatch=True)
    assert dest.read_bytes() == b"tampered"


def test_existing_corrupt_file_is_moved_aside_and_fetched_again(served, tmp_path):
    folder, url = served
    (folder / "f.bin").write_bytes(b"payload")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"payl")  # a truncated earlier download
    with pytest.warns(UserWarning, match="does not match"):
        fetch(f"{url}/f.bin", dest, md5=_md5(b"payload"))
    assert dest.read_bytes() == b"payload"
    assert [p.read_bytes() for p in tmp_path.glob("f.bin.corrupt-*")] == [b"payl"]


def test_truncated_transfer_fails(tmp_path):
    server, url = _serve(_Truncating)
    try:
        with pytest.raises(DatasetUnavailableError, match="could not download"):
            fetch(f"{url}/x.zip", tmp_path / "x.zip")
    finally:
        server.shutdown()
        server.server_close()
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial file left


def test_offline_fails_fast_with_url_file_and_destination(closed_port_url, tmp_path):
    dest = tmp_path / "pathmnist" / "raw" / "pathmnist_224.npz"
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as err:
        fetch(closed_port_url, dest, md5="0" * 32)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert closed_port_url in message and "'pathmnist_224.npz'" in message and str(dest) in message
    assert isinstance(err.value, RuntimeError)


def test_stalled_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        start = time.monotonic()
        with pytest.raises(DatasetUnavailableError, match="timed out"):
            fetch(f"http://127.0.0.1:{listener.getsockname()[1]}/x.npz", tmp_path / "x.npz", timeout=0.5)
        assert time.monotonic() - start < 5


def test_medmnist_prepare_offline_is_actionable(monkeypatch, closed_port_url, tmp_path):
    info = data.medmnist.INFO["breastmnist"]
    monkeypatch.setitem(info, "url", closed_port_url)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as err:
        data.prepare("breastmnist", tmp_path, size=28)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert closed_port_url in message and info["MD5"] in message
    assert str(tmp_path / "breastmnist" / "raw" / "breastmnist.npz") in message
    assert not (tmp_path / "breastmnist" / "28").exists()


def test_medmnist_download_then_decode(monkeypatch, served, tmp_path):
    folder, url = served
    path = write_medmnist(folder, SynthConfig(num_classes=2, size=28, channels=1), flag="breastmnist")
    monkeypatch.setitem(data.medmnist.INFO["breastmnist"], "url", f"{url}/{path.name}")
    monkeypatch.setitem(data.medmnist.INFO["breastmnist"], "MD5", _md5(path.read_bytes()))
    splits = data.load("breastmnist", tmp_path / "data", size=28)
    assert splits["train"].images.shape == (100, 3, 28, 28)
    assert (tmp_path / "data" / "breastmnist" / "raw" / "breastmnist.npz").is_file()


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


@pytest.mark.parametrize("prefix", ["CT_COVID/", ""])
def test_extract_zip_with_or_without_a_wrapping_folder(tmp_path, prefix):
    archive = _zip(tmp_path / "CT_COVID.zip", {f"{prefix}a.png": b"1", f"{prefix}b.png": b"2", "__MACOSX/._a": b""})
    out = extract_zip(archive, tmp_path, "CT_COVID")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert (out / "a.png").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["CT_COVID", "CT_COVID.zip"]  # no temporaries left


def test_damaged_zip_is_moved_aside(tmp_path):
    archive = _zip(tmp_path / "Dataset_BUSI.zip", {"Dataset_BUSI_with_GT/benign/x.png": b"x" * 1000})
    archive.write_bytes(archive.read_bytes()[:-60])  # cut the central directory
    with pytest.warns(UserWarning), pytest.raises(CorruptFileError, match="damaged"):
        extract_zip(archive, tmp_path, "Dataset_BUSI_with_GT")
    assert not archive.exists() and len(list(tmp_path.glob("Dataset_BUSI.zip.corrupt-*"))) == 1
    assert not (tmp_path / "Dataset_BUSI_with_GT").exists()
