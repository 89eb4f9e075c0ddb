"""`hf:NAME_OR_DIR` with Hugging Face `datasets`: a local image folder, a dataset saved with
`save_to_disk`, and the clear error for a hub id when the hub cannot be reached."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.cache import prepare
from benchmark.data.source import Clip
from benchmark.data.spec import parse_dataset_spec
from benchmark.errors import UserError


def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def test_local_image_folder_with_splits(tmp_path):
    root = tmp_path / "planes"
    for split, n in (("train", 3), ("test", 2)):
        for cls, value in (("3VV", 40), ("4CH", 120)):
            for k in range(n):
                write_image(root / split / cls / f"{k}.png", value)
    source = parse_dataset_spec(f"hf:{root}", resolution=8, hf_cache_dir=str(tmp_path / "hf"))
    assert source.class_names("downstream") == ["3VV", "4CH"]
    clips = list(source.items("downstream"))
    assert len(clips) == 10 and all(isinstance(c, Clip) for c in clips)
    by_split = {s: [c for c in clips if c.split == s] for s in ("train", "test")}
    assert len(by_split["train"]) == 6 and len(by_split["test"]) == 4
    for c in clips:  # every label matches the image content of its class folder
        assert int(c.frames[0, 4, 4]) == (40 if c.labels[0] == 0 else 120)


def test_saved_dataset_with_string_labels_and_a_subject_column(tmp_path):
    import datasets

    images = [Image.fromarray(np.full((12, 12), 30 * k, np.uint8)) for k in range(6)]
    ds = datasets.Dataset.from_dict(
        {"image": images, "plane": ["RVOT", "LVOT", "RVOT", "LVOT", "3VT", "3VT"],
         "patient_id": ["p1", "p1", "p2", "p2", "p3", "p4"]},
        features=datasets.Features({"image": datasets.Image(), "plane": datasets.Value("string"),
                                    "patient_id": datasets.Value("string")}))
    ds.save_to_disk(str(tmp_path / "saved"))
    source = parse_dataset_spec(f"hf:{tmp_path / 'saved'}", resolution=8, label_column="plane")
    assert source.class_names("downstream") == ["3VT", "LVOT", "RVOT"]
    clips = list(source.items("downstream"))
    assert [(c.subject_id, int(c.labels[0])) for c in clips] == [
        ("p1", 2), ("p1", 1), ("p2", 2), ("p2", 1), ("p3", 0), ("p4", 0)]
    assert [int(c.frames[0, 4, 4]) for c in clips] == [0, 30, 60, 90, 120, 150]
    assert all(c.split is None for c in clips)  # one split: divided by subject in the cache
    cache = prepare(source, "downstream", cache_dir=tmp_path / "cache", progress=False)
    assert (cache.index.groupby("subject_id")["split"].nunique() == 1).all()
    with pytest.raises(UserError, match="no label column 'Plane'"):
        parse_dataset_spec(f"hf:{tmp_path / 'saved'}", label_column="Plane").class_names("downstream")


def _no_load_dataset(*args, **kwargs):
    raise AssertionError("load_dataset must not be tried when the hub is unreachable")


def test_hub_id_without_network_fails_fast_with_a_clear_message(monkeypatch):
    import datasets
    import huggingface_hub.constants

    # An endpoint nothing listens on stands for "no network", whatever the machine running the test has.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    # Failing fast means one metadata request and no load_dataset, which retries for about 25 s offline.
    monkeypatch.setattr(datasets, "load_dataset", _no_load_dataset)
    source = parse_dataset_spec("hf:some-lab/fetal-planes")
    assert source.fingerprint_parts("downstream")["hub_id"] == "some-lab/fetal-planes"  # no network needed
    with pytest.raises(UserError) as err:
        source.class_names("downstream")
    msg = str(err.value)
    assert msg.startswith("hf:some-lab/fetal-planes: cannot reach the Hugging Face hub")
    assert "save_to_disk" in msg and "--dataset hf:DIR" in msg


def test_missing_local_path(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        parse_dataset_spec(f"hf:{tmp_path / 'nope'}").class_names("downstream")


def test_cli_prepares_a_local_folder(tmp_path, capsys):
    from benchmark.cli import main

    for k in range(9):
        write_image(tmp_path / "planes" / "abc"[k % 3] / f"{k}.png", 20 * k)
    assert main(["data", "prepare", "--dataset", f"hf:{tmp_path / 'planes'}", "--cache-dir", str(tmp_path / "c"),
                 "--resolution", "8", "-o", f"hf_cache_dir={tmp_path / 'hf'}"]) == 0
    out = capsys.readouterr().out
    assert "frames     9 of 8×8 px" in out and "classes    a 3, b 3, c 3" in out
