"""Hostile round three (issue 39), the data: a split list or symlink leading out of the dataset folder,
images whose header promises gigabytes, and small named files that are devices, FIFOs, folders or huge."""
import io
import os
import signal
import struct
import warnings
import zlib

import pytest
from PIL import Image

from bench.core.errors import BenchError
from bench.data import folder_lt as lt
from bench.data.coop import CoOpConfig, CoOpDatasets
from bench.data.listed import PIXELS_VAR, ListedImages
import test_folder_lt
from test_overrides import one_error, run  # the CLI helpers

fake = test_folder_lt.fake  # the ImageNet-LT / Places-LT fake tree fixture
CLASSES = test_folder_lt.CLASSES

VARIANTS = ["707-320", "A300B4", "Boeing 737", "F-16A/B"]
SECRET = "../../../../outside/secret"  # from <tmp>/data/fgvc_aircraft/images: <tmp>/../outside/secret.jpg


def small_image(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (30, 60, 90)).save(path, "PNG")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` RGB, with almost no pixel data: only decoding it
    would notice (after allocating 3 bytes per promised pixel)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def fgvc_tree(root, extra_train_line=None):
    """FGVC-Aircraft in CoOp's layout under ``root`` (the data root): 4 variants, 3 train and 2 test
    images each; ``extra_train_line`` goes in as line 3 of the train list."""
    here = root / "fgvc_aircraft"
    (here / "images").mkdir(parents=True)
    (here / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        lines = [f"{part}{v}{i:03d} {name}" for v, name in enumerate(VARIANTS) for i in range(n)]
        for line in lines:
            small_image(here / "images" / (line.split(" ")[0] + ".jpg"))
        if part == "train" and extra_train_line:
            lines.insert(2, extra_train_line)
        (here / f"images_variant_{part}.txt").write_text("\n".join(lines) + "\n")
    return here


@pytest.fixture
def outside(tmp_path):
    """A file the dataset must not reach: ``SECRET`` + .jpg seen from the FGVC image folder."""
    secret = tmp_path.parent / "outside" / "secret.jpg"
    small_image(secret)
    yield secret.resolve()
    secret.unlink()


# --- item 14: listed files stay under the dataset folder --------------------------------------------

def test_data_check_refuses_a_split_line_leading_out_of_the_dataset(capsys, tmp_path, outside):
    here = fgvc_tree(tmp_path / "data", f"{SECRET} 707-320")
    error = one_error(capsys, "data", "check", "fgvc_aircraft", "--root", str(tmp_path / "data"))
    assert f"split list '{here / 'images_variant_train.txt'}', line 3: '{SECRET}.jpg' resolves to '{outside}', " \
           f"outside the dataset folder '{here / 'images'}'" in error
    assert "every listed image is under" not in capsys.readouterr().out


def test_data_check_refuses_a_symlink_leading_out_of_the_dataset(capsys, tmp_path, outside):
    here = fgvc_tree(tmp_path / "data")
    (here / "images" / "train0001.jpg").unlink()
    os.symlink(outside, here / "images" / "train0001.jpg")
    error = one_error(capsys, "data", "check", "fgvc_aircraft", "--root", str(tmp_path / "data"))
    assert f"split list '{here / 'images_variant_train.txt'}', line 2: 'train0001.jpg' resolves to '{outside}'" in error
    # a symlinked data root (or dataset folder) is fine: the files resolve under its target
    os.symlink(tmp_path / "data", tmp_path / "linked")
    (here / "images" / "train0001.jpg").unlink()
    small_image(here / "images" / "train0001.jpg")
    code, out, _ = run(capsys, "data", "check", "fgvc_aircraft", "--root", str(tmp_path / "linked"))
    assert code == 0 and f"every listed image is under '{tmp_path / 'linked'}'" in out


def test_a_build_refuses_a_line_leading_out_and_loading_a_link_made_since(tmp_path, outside):
    here = fgvc_tree(tmp_path / "data", f"{SECRET} 707-320")
    cfg = CoOpConfig(dataset="fgvc_aircraft", root=str(tmp_path / "data"), shots=0)
    with pytest.raises(BenchError, match=r"images_variant_train.txt', line 3: '\.\./.*' resolves to"):
        CoOpDatasets.build(cfg, seed=1)
    (here / "images_variant_train.txt").write_text(
        "".join(line + "\n" for line in (here / "images_variant_train.txt").read_text().splitlines()
                if "secret" not in line))
    bundle = CoOpDatasets.build(cfg, seed=1)
    index = bundle.test.paths.index("test0000.jpg")
    (here / "images" / "test0000.jpg").unlink()
    os.symlink(outside, here / "images" / "test0000.jpg")  # after the build: caught when opened
    with pytest.raises(BenchError, match=r"images_variant_test.txt', line 1: 'test0000.jpg' resolves to '.*secret"):
        bundle.test[index]


def test_lt_datasets_refuse_a_class_folder_linked_out_of_their_root(fake, tmp_path):
    cls, cfg = fake
    folder = tmp_path / "root" / "train" / CLASSES[cls][0]  # holds a.jpg, line 1 of the train list
    os.rename(folder, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", folder)
    with pytest.raises(BenchError, match=rf"split list '.*', line 1: 'train/{folder.name}/a.jpg' resolves to "
                                         rf"'{tmp_path / 'elsewhere'}/a.jpg', outside the dataset folder"):
        cls.build(cfg)
    with pytest.raises(BenchError, match="resolves to .*, outside the dataset folder"):
        cls.check(cfg)
    assert lt.ListedImages is ListedImages  # the loader other modules import from folder_lt


# --- item 15: a pixel cap, checked from the header --------------------------------------------------

def test_an_image_over_the_pixel_cap_is_refused_from_its_header_without_pils_warning(tmp_path, monkeypatch):
    monkeypatch.delenv(PIXELS_VAR, raising=False)
    (tmp_path / "big.png").write_bytes(png_header(12000, 12000))  # 144 megapixels in 200 bytes
    images = ListedImages(str(tmp_path), ["big.png"], [0], "Places-LT")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(BenchError) as info:
            images[0]
    assert str(info.value) == (f"Places-LT: image '{tmp_path / 'big.png'}' is 12000x12000 pixels (144.0 megapixels, "
                               "0.4 GB decoded), over the cap of 64 megapixels per image; shrink it, or raise the "
                               f"cap with {PIXELS_VAR}=144")  # not "truncated": refused before decoding
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_pixel_cap_is_set_by_the_environment(tmp_path, monkeypatch):
    small_image(tmp_path / "a.png", (200, 100))  # 0.02 megapixels
    monkeypatch.setenv(PIXELS_VAR, "0.01")
    with pytest.raises(BenchError, match=f"over the cap of 0.01 megapixels per image; .* {PIXELS_VAR}=1$"):
        ListedImages(str(tmp_path), ["a.png"], [0], "t")[0]
    monkeypatch.setenv(PIXELS_VAR, "0.02")
    image, label = ListedImages(str(tmp_path), ["a.png"], [0], "t")[0]
    assert image.size == (200, 100) and label == 0
    for bad in ("abc", "0", "-5", "1e9", "nan"):
        monkeypatch.setenv(PIXELS_VAR, bad)
        with pytest.raises(BenchError, match=rf"\${PIXELS_VAR}=.*: expected the megapixels an image may have"):
            ListedImages(str(tmp_path), ["a.png"], [0], "t")


@pytest.mark.slow  # two runs of a real cell on a tiny backbone
def test_runs_refuse_a_line_leading_out_and_an_image_over_the_cap(capsys, tmp_path, monkeypatch, outside):
    here = fgvc_tree(tmp_path / "data", f"{SECRET} 707-320")
    tiny = ["--set", "protocol.backbone.model=bench-tiny-vit", "--set", "protocol.backbone.pretrained=null",
            "--set", "protocol.transforms.size=32", "--set", "protocol.eval.batch_size=8",
            "--set", "protocol.train.num_workers=0"]
    argv = ["run", "--protocol", "b2n_lamp/fgvc_aircraft/imb10", "--method", "zeroshot", "--seeds", "1",
            "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"), "--no-progress", *tiny]
    error = one_error(capsys, *argv)
    assert f"split list '{here / 'images_variant_train.txt'}', line 3: '{SECRET}.jpg' resolves to '{outside}'" in error
    fgvc_tree(tmp_path / "data2")
    (tmp_path / "data2" / "fgvc_aircraft" / "images" / "test0000.jpg").write_bytes(png_header(12000, 12000))
    argv[argv.index("--data-root") + 1] = str(tmp_path / "data2")
    monkeypatch.delenv(PIXELS_VAR, raising=False)
    code, out, err = run(capsys, *argv)
    assert code == 1 and "1 failed" in out + err, out + err
    assert f"image '{tmp_path / 'data2' / 'fgvc_aircraft' / 'images' / 'test0000.jpg'}' is 12000x12000 pixels" in out
    assert "DecompressionBomb" not in out + err


# --- item 16: small named files are read with a bound; devices, FIFOs and folders refused ------------

@pytest.fixture
def fifo(tmp_path):
    """A FIFO nobody writes to (opening it to read would wait forever: an alarm ends the wait)."""
    path = tmp_path / "fifo"
    os.mkfifo(path)

    def interrupted(signum, frame):
        raise TimeoutError("opened the FIFO and waited for a writer")

    previous = signal.signal(signal.SIGALRM, interrupted)
    signal.alarm(10)
    yield path
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def huge(path):
    with open(path, "wb") as f:
        f.truncate(3 << 20)  # 3 MB of zeros, sparse: nothing written
    return path


@pytest.mark.parametrize("kind", ["device", "folder", "fifo", "huge"])
def test_the_data_roots_file_is_refused_unless_a_small_regular_file(capsys, tmp_path, monkeypatch, request, kind):
    path = {"device": lambda: "/dev/null", "folder": lambda: tmp_path, "fifo": lambda: request.getfixturevalue("fifo"),
            "huge": lambda: huge(tmp_path / "data.yaml")}[kind]()
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(path))
    error = one_error(capsys, "data", "list")
    what = {"device": "is a character device, not a file", "folder": "is a folder, not a file",
            "fifo": "is a FIFO (named pipe), not a file",
            "huge": "has 3,145,728 bytes, more than the 1,048,576 it may have"}[kind]
    assert error.startswith(f"bench: error: data roots file '{path}' {what}; it must be a small YAML file")
    assert capsys.readouterr().out == ""  # the error before any listing


@pytest.mark.parametrize("kind", ["device", "folder", "fifo", "huge"])
def test_the_slurm_profile_is_refused_unless_a_small_regular_file(tmp_path, request, kind):
    from bench.launch.slurm import load_profile

    path = {"device": lambda: "/dev/null", "folder": lambda: tmp_path, "fifo": lambda: request.getfixturevalue("fifo"),
            "huge": lambda: huge(tmp_path / "p.yaml")}[kind]()
    with pytest.raises(BenchError, match=rf"^--slurm-profile '{path}' (is a|has 3,145,728 bytes).*; it must be a "
                                         r"small YAML file of partition, time_min"):
        load_profile(str(path), {})


def test_a_data_roots_key_naming_no_dataset_is_a_warning(capsys, tmp_path, monkeypatch):
    roots = tmp_path / "data.yaml"
    roots.write_text(f"fgvc_aircarft: {tmp_path}\ncoop: {tmp_path}\n")
    monkeypatch.setenv("BENCH_DATA_ROOTS", str(roots))
    code, out, err = run(capsys, "data", "list")
    assert code == 0 and err.count("bench: warning:") == 1
    assert f"bench: warning: data roots file '{roots}': 'fgvc_aircarft' is not a dataset name, so its folder is not " \
           "used; did you mean 'fgvc_aircraft'? (known: caltech101, cifar100_lt, coop, " in err
    assert "imagenet_lt, " in err and "places_lt, " in err


def test_split_files_and_lists_in_a_data_root_are_read_with_a_bound(tmp_path):
    from bench.data import files
    from bench.data.folder_lt import IMAGENET_LT_TRAIN

    os.symlink("/dev/zero", tmp_path / "ImageNet_LT_train.txt")
    with pytest.raises(BenchError, match=r"split file '.*ImageNet_LT_train.txt' is a character device, not a file; "
                                         "replace it with ImageNet_LT_train.txt from"):
        files.read_text(IMAGENET_LT_TRAIN, tmp_path / "ImageNet_LT_train.txt")
    here = fgvc_tree(tmp_path / "data")
    (here / "variants.txt").unlink()
    os.symlink("/dev/zero", here / "variants.txt")
    with pytest.raises(BenchError, match=r"FGVCAircraft list '.*variants.txt' is a character device, not a file"):
        CoOpDatasets.check(CoOpConfig(dataset="fgvc_aircraft", root=str(tmp_path / "data")))


def test_a_download_reads_no_more_than_the_file_can_have(tmp_path):
    from bench.data import files
    from bench.data.folder_lt import IMAGENET_LT_TRAIN

    class Endless(io.RawIOBase):
        """A server that never stops sending."""
        def read(self, size=-1):
            assert size >= 0, "read without a bound"
            return b"x" * size

    with pytest.raises(BenchError, match=r"does not match: it has 4,658,675 bytes, expected 4,658,674; nothing was"):
        files.download(IMAGENET_LT_TRAIN, tmp_path / "t.txt", opener=lambda url, timeout: Endless())
    assert not (tmp_path / "t.txt").exists()
