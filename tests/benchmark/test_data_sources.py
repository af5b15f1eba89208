"""Real data in from anywhere: --from a folder or archive (read in place, never modified),
checksums recorded honestly, a mirror for the downloads, `show`, one cache per dataset name."""
import contextlib
import hashlib
import json
import shutil
import zipfile

import numpy as np
import pytest

import benchmark.data as data
from benchmark import paths
from benchmark.data.__main__ import main
from benchmark.data.official_formats import TINY, write_official_mirror
from benchmark.data.synthetic import SynthConfig, write_medmnist

SIZE = 8


def _tree_md5(folder):
    """{relative path: md5} of every file under ``folder`` (a file: its own md5)."""
    if folder.is_file():
        return {folder.name: hashlib.md5(folder.read_bytes()).hexdigest()}
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A mirror folder in the official formats, and the sources of the manual datasets."""
    folder = tmp_path_factory.mktemp("mirror")
    return folder, write_official_mirror(folder)


def _unzip(archive, dest):
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    return dest


def test_every_real_dataset_through_the_mirror_and_sources(mirror, tmp_path, monkeypatch):
    """COVID-CT, BUSI and MedMNIST fetched from the mirror (by official file name), Chaoyang and
    brain MRI from their folders; tiny files differ from the published counts/md5s, so the
    mismatch is accepted explicitly and recorded as user-supplied."""
    folder, sources = mirror
    before = _tree_md5(folder)
    monkeypatch.setenv(data.MIRROR_ENV, str(folder))
    root = tmp_path / "data"
    totals = {}
    for name in ("covid_ct", "busi", "breastmnist", "chaoyang", "brain_mri"):
        with pytest.warns(UserWarning) if name == "breastmnist" else contextlib.nullcontext():  # accepted md5
            data.prepare(name, root, SIZE, source=sources.get(name), accept_checksum_mismatch=True)
        info = data.meta(name, root, SIZE)
        totals[name] = sum(info["counts"][s]["total"] for s in data.SPLITS)
        expected = "unpublished" if name == "brain_mri" else "user-supplied"  # brain MRI: nothing to check
        assert info["checksum"]["status"] == expected and info["checksum"]["files"]
    n = TINY.n_train + TINY.n_val + TINY.n_test
    assert totals == {"covid_ct": n, "busi": n, "breastmnist": n, "chaoyang": TINY.n_train + TINY.n_test,
                      "brain_mri": TINY.n_train + TINY.n_test}
    busi_meta = data.meta("busi", root, SIZE)
    assert not any("_mask" in f or "MACOSX" in f for fs in busi_meta["files"].values() for f in fs)
    assert _tree_md5(folder) == before  # the mirror is only read


def test_without_accepting_the_tiny_copies_are_refused(mirror, tmp_path):
    folder, sources = mirror
    with pytest.raises(data.DataError, match="accept-checksum-mismatch"):
        data.prepare("busi", tmp_path, SIZE, mirror=folder)
    with pytest.raises(data.DataError, match="published"):
        data.prepare("chaoyang", tmp_path, SIZE, source=sources["chaoyang"])


@pytest.mark.parametrize("form", ["folder", "parent", "zip"])
def test_busi_from_a_folder_its_parent_or_the_zip(mirror, tmp_path, form):
    folder, _ = mirror
    extracted = _unzip(folder / "Dataset_BUSI.zip", tmp_path / "user")
    given = {"folder": extracted / "Dataset_BUSI_with_GT", "parent": extracted, "zip": folder / "Dataset_BUSI.zip"}[form]
    before = _tree_md5(given)
    data.prepare("busi", tmp_path / "data", SIZE, source=given, accept_checksum_mismatch=True)
    info = data.meta("busi", tmp_path / "data", SIZE)
    assert info["from"] == str(given) and info["splits"]["policy"] == "seeded stratified split"
    assert sorted(sum(info["files"].values(), []))[0] == "benign/benign (1).png"  # relative to the layout
    assert _tree_md5(given) == before


def test_covid_ct_from_a_checkout_with_zipped_images(mirror, tmp_path):
    """The repository as cloned: Images-processed/*.zip (unpacked into raw) + Data-split/."""
    folder, _ = mirror
    repo = tmp_path / "COVID-CT-master"
    (repo / "Images-processed").mkdir(parents=True)
    for zipped in ("CT_COVID.zip", "CT_NonCOVID.zip"):
        shutil.copy(folder / zipped, repo / "Images-processed" / zipped)
    for cls in data.covid_ct.CLASSES:
        for split in data.SPLITS:
            (repo / data.covid_ct.split_list(cls, split)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(folder / f"{split}CT_{cls}.txt", repo / data.covid_ct.split_list(cls, split))
    before = _tree_md5(repo)
    data.prepare("covid_ct", tmp_path / "data", SIZE, source=repo, accept_checksum_mismatch=True)
    info = data.meta("covid_ct", tmp_path / "data", SIZE)
    assert info["splits"]["policy"] == "official train/val/test" and info["from"] == str(repo)
    assert [info["counts"][s]["total"] for s in data.SPLITS] == [TINY.n_train, TINY.n_val, TINY.n_test]
    assert _tree_md5(repo) == before and not list(repo.rglob("CT_COVID/*"))  # unpacked in raw, not here
    assert (paths.raw_dir(tmp_path / "data", "covid_ct") / "Images-processed" / "CT_COVID").is_dir()


@pytest.mark.parametrize("name", ["chaoyang", "brain_mri"])
def test_manual_datasets_from_their_archives(mirror, tmp_path, name):
    """Chaoyang's archive wraps chaoyang-data/; Kaggle's brain MRI zip holds Training/ and Testing/."""
    _, sources = mirror
    archive = tmp_path / f"{name}.zip"
    base = sources[name].parent if name == "chaoyang" else sources[name]
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(sources[name].rglob("*")):
            zf.write(path, path.relative_to(base).as_posix())
    before = _tree_md5(archive)
    data.prepare(name, tmp_path / "data", SIZE, source=archive, accept_checksum_mismatch=True)
    info = data.meta(name, tmp_path / "data", SIZE)
    assert [info["counts"][s]["total"] for s in data.SPLITS] == [8, 4, 4] and info["from"] == str(archive)
    assert _tree_md5(archive) == before


def test_labels_outside_the_classes_are_a_named_error(tmp_path):
    path = write_medmnist(tmp_path, SynthConfig(num_classes=4, size=28), flag="breastmnist")  # breastmnist: 2
    with pytest.raises(data.DegenerateDatasetError, match="labels outside 0..1"):
        data.prepare("breastmnist", tmp_path / "data", 28, source=path, accept_checksum_mismatch=True)


def _npz(tmp_path, flag="breastmnist"):
    return write_medmnist(tmp_path / "user", SynthConfig(num_classes=2, size=28, channels=1), flag=flag)


def test_medmnist_file_with_a_foreign_md5_is_refused_then_accepted(tmp_path, capsys):
    path = _npz(tmp_path)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    official = data.medmnist.published("breastmnist")[28][1]
    args = ["prepare", "breastmnist", "--from", str(path), "--root", str(tmp_path / "data"), "--size", "28"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert md5 in err and official in err and "--accept-checksum-mismatch" in err
    assert hashlib.md5(path.read_bytes()).hexdigest() == md5 and list(path.parent.iterdir()) == [path]
    assert not paths.ready_marker(tmp_path / "data", "breastmnist", 28).exists()
    main([*args, "--accept-checksum-mismatch"])
    info = data.meta("breastmnist", tmp_path / "data", 28)
    assert info["checksum"] == {"status": "user-supplied", "files": {path.name: md5}}
    assert hashlib.md5(path.read_bytes()).hexdigest() == md5


def test_medmnist_file_with_the_official_md5_is_used_as_is(tmp_path, monkeypatch):
    path = _npz(tmp_path)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(data.medmnist.INFO["breastmnist"], "MD5_64", md5)  # pretend it is the official 64 px file
    data.prepare("breastmnist", tmp_path / "data", 28, source=path.parent)  # a folder: found by official name
    info = data.meta("breastmnist", tmp_path / "data", 28)
    assert info["checksum"] == {"status": "official", "files": {path.name: md5}}


def test_aliases_share_the_raw_download_but_not_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "mirror"
    path = write_medmnist(folder, SynthConfig(num_classes=7, size=28), flag="dermamnist")
    monkeypatch.setitem(data.medmnist.INFO["dermamnist"], "MD5", hashlib.md5(path.read_bytes()).hexdigest())
    root = tmp_path / "data"
    data.prepare("dermamnist", root, 28, mirror=folder)
    shutil.rmtree(folder)  # the alias must not download again
    data.prepare("standin-derma", root, 28)
    assert paths.ready_marker(root, "dermamnist", 28).exists() and paths.ready_marker(root, "standin-derma", 28).exists()
    assert [p.name for p in paths.raw_dir(root, "dermamnist").iterdir()] == ["dermamnist.npz"]
    assert not paths.raw_dir(root, "standin-derma").exists()
    assert data.meta("standin-derma", root, 28)["name"] == "standin-derma"


def test_recorded_source_is_reused_and_a_changed_source_rebuilds(tmp_path, data_images):
    user = tmp_path / "user"
    data_images([user / c / f"{i}.png" for c in ("a", "b") for i in range(5)], size=(6, 6))
    root = tmp_path / "data"
    data.register_folder("mine")
    data.prepare("mine", root, SIZE, source=user)
    ready = paths.ready_marker(root, "mine", SIZE)
    stamp = ready.stat().st_mtime_ns
    data.prepare("mine", root, SIZE)  # no source: the recorded one, unchanged -> the cache as is
    assert ready.stat().st_mtime_ns == stamp
    data_images([user / "b" / "new.png"], size=(6, 6))
    data.prepare("mine", root, SIZE)  # the recorded source changed -> rebuilt from it
    assert sum(data.meta("mine", root, SIZE)["counts"][s]["total"] for s in data.SPLITS) == 11


def test_show_prints_classes_and_counts(tmp_path, capsys, data_images):
    user = tmp_path / "scans"
    data_images([user / c / f"{i}.png" for c, n in (("x", 10), ("y", 20)) for i in range(n)], size=(6, 6))
    name = f"folder:{user}"
    with pytest.raises(SystemExit):
        main(["show", name, "--root", str(tmp_path / "data"), "--size", str(SIZE)])
    assert "not prepared" in capsys.readouterr().err
    main(["prepare", name, "--root", str(tmp_path / "data"), "--size", str(SIZE)])
    capsys.readouterr()
    main(["show", name, "--root", str(tmp_path / "data"), "--size", str(SIZE), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["classes"] == ["x", "y"] and shown["all"] == {"x": 10, "y": 20, "total": 30}
    assert sum(shown["counts"][s]["y"] for s in data.SPLITS) == 20
    assert shown["cache"] == str(paths.cache_dir(tmp_path / "data", name, SIZE))
    main(["show", name, "--root", str(tmp_path / "data"), "--size", str(SIZE)])
    assert "all" in capsys.readouterr().out


def test_offline_mirror_miss_names_the_mirror_and_the_official_url(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.prepare("busi", tmp_path / "data", SIZE, mirror=tmp_path / "empty-mirror")
    message = str(err.value)
    assert "empty-mirror/Dataset_BUSI.zip" in message and data.busi.URL in message


def test_missing_source_is_a_named_error(tmp_path):
    with pytest.raises(data.DatasetUnavailableError, match="no such file"):
        data.prepare("busi", tmp_path, SIZE, source=tmp_path / "nowhere")
    np.save(tmp_path / "x.npy", np.zeros(2))
    with pytest.raises(data.DatasetUnavailableError, match="neither a folder nor a readable zip"):
        data.prepare("busi", tmp_path, SIZE, source=tmp_path / "x.npy")
