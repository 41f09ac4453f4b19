"""Every ```python block of README.md and docs/*.md runs here, one test per block (so the docs cannot drift).

Blocks use names the prose defines (``source_image``, ``target_pose``, ``parsing``, ``pipe``, ``dataset``, ...) and
paths or Hub ids that need the network or real data. Each block therefore runs in ``tmp_path`` (relative paths
resolve to fixture files written there) after a prelude of tiny real objects from `truepose.testing`, and after the
textual substitutions of ``SUBSTITUTIONS`` below, the complete list of what differs from the text a reader sees.
A block that cannot run offline is listed, with its reason, in ``NOT_RUN``.

docs/evaluation.md, docs/animate.md and docs/app.md have their own tests (``RUN_ELSEWHERE``).
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from truepose.data import SyntheticPoseDataset, make_deepfashion_fixture
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]

# Python blocks per file; a new or removed block fails `test_block_counts` until this table (and, if needed,
# SUBSTITUTIONS / NOT_RUN) is updated.
BLOCK_COUNTS = {
    "README.md": 4,
    "docs/analysis.md": 1,
    "docs/data.md": 7,
    "docs/inputs.md": 5,
    "docs/install.md": 1,
}
RUN_ELSEWHERE = {
    "docs/evaluation.md": "tests/evaluation/test_docs.py",
    "docs/animate.md": "tests/test_animate.py",
    "docs/app.md": "tests/test_app.py",
}

# Where the tiny pipelines are saved (`save_pretrained`), relative to the test's working directory (tmp_path).
TINY_MODEL = "tiny-truepose"
TINY_MODEL_WITH_PARSER = "tiny-truepose-with-parser"  # README.md's first sketch passes no parsing map

# (file, block index) -> [(text in the doc, text that runs)]. Each `old` must occur in its block.
_ON_CPU = [('.to("cuda")', '.to("cpu")')]
_FP32 = [("dtype=torch.float16", "dtype=torch.float32")]
_FEW_STEPS = [("num_inference_steps=35", "num_inference_steps=2")]  # 64x64 random weights: 2 steps show it runs
SUBSTITUTIONS: dict[tuple[str, int], list[tuple[str, str]]] = {
    ("README.md", 0): [("num_inference_steps=25", "num_inference_steps=2")],  # the shipped model, as written
    ("README.md", 1): [('"org/truepose"', repr(TINY_MODEL_WITH_PARSER)), *_FP32, *_ON_CPU],
    ("README.md", 2): [('"path/or/hub-id"', repr(TINY_MODEL)), *_FP32, *_ON_CPU, *_FEW_STEPS],
    ("README.md", 3): [('"path/or/hub-id"', repr(TINY_MODEL))],
    ("docs/analysis.md", 0): [('"path/to/truepose"', repr(TINY_MODEL)), *_ON_CPU, *_FEW_STEPS],
    ("docs/data.md", 0): [("num_workers=4", "num_workers=0")],  # no worker processes in the test suite
    ("docs/data.md", 4): [("image_size=(512, 352)", "image_size=(64, 44)"), ("(256, 176)", "(64, 44)")],
    ("docs/data.md", 5): [
        ('"/tmp/fashion"', '"tmp-fashion"'),  # inside tmp_path, not the machine's /tmp
        ("num_images=8, image_size=(512, 352)", "num_images=2, image_size=(64, 44)"),
        ("(256, 176)", "(64, 44)"),
    ],
    ("docs/data.md", 6): [("image_size=(512, 352)", "image_size=(64, 44)")],
    ("docs/inputs.md", 3): [("parsing_label_map=label_map)", "parsing_label_map=label_map, num_inference_steps=2)")],
}

# (file, block index) -> imports the block takes for granted (README.md's opening sketch), run before it.
IMPLIED_IMPORTS: dict[tuple[str, int], str] = {
    ("README.md", 1): "import torch\nfrom truepose import TruePosePipeline\n",
}

# (file, block index) -> why the block is not run.
NOT_RUN: dict[tuple[str, int], str] = {
    ("docs/inputs.md", 2): (
        "PoseDetector.from_pretrained needs the trained OpenPose body weights (lllyasviel/Annotators, 200 MB, "
        "network); with random weights it finds no person and the block raises by design "
        "(tests/conditioning/test_detector.py covers both the loader and the detector's frame mapping)"
    ),
    ("docs/inputs.md", 4): (
        "loads a Segformer and the OpenPose weights from the Hub (network); tests/test_first_user.py runs the same "
        "loaders on tiny local checkpoints"
    ),
}


def _python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / name).read_text(encoding="utf-8"), flags=re.DOTALL)


BLOCKS = [(name, index) for name, count in BLOCK_COUNTS.items() for index in range(count)]


def test_block_counts():
    docs = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
    counts = {name: len(_python_blocks(name)) for name in docs}
    counts = {name: count for name, count in counts.items() if count and name not in RUN_ELSEWHERE}
    assert counts == BLOCK_COUNTS, "python blocks changed: run each new block in tests/test_docs_blocks.py"
    for key in [*SUBSTITUTIONS, *IMPLIED_IMPORTS, *NOT_RUN]:
        assert key in BLOCKS, f"stale entry {key}"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    tiny_pipeline(0).save_pretrained(folder / TINY_MODEL)
    tiny_pipeline(0, with_parser=True).save_pretrained(folder / TINY_MODEL_WITH_PARSER)
    return folder


def _write_fixtures(folder: Path, model_dir: Path) -> None:
    """Files the blocks name by relative path: the model, a photo, annotation files, data sets."""
    for model in (TINY_MODEL, TINY_MODEL_WITH_PARSER):
        (folder / model).symlink_to(model_dir / model, target_is_directory=True)
    source_image, source_parsing = tiny_person(0)
    source_image.save(folder / "person.jpg")
    # DeepFashion annotation CSV: `name:keypoints_y:keypoints_x`, JSON lists of 18 ints, -1 missing.
    ys = json.dumps([int(y) for y in TINY_KEYPOINTS[:, 1]])
    xs = json.dumps([int(x) for x in TINY_KEYPOINTS[:, 0]])
    (folder / "fasion-resize-annotation-test.csv").write_text(
        f"name:keypoints_y:keypoints_x\nperson.jpg: {ys}: {xs}\n", encoding="utf-8"
    )
    # OpenPose JSON: people[*].pose_keypoints_2d, flat [x, y, c] * 18 (COCO).
    openpose = {"version": 1.3, "people": [{"pose_keypoints_2d": TINY_KEYPOINTS.clip(0).flatten().tolist()}]}
    (folder / "frame_000000_keypoints.json").write_text(json.dumps(openpose), encoding="utf-8")
    # DeepFashion in the PIDM/CFLD layout.
    make_deepfashion_fixture(folder / "fashion", num_images=2, image_size=(64, 44))
    # FolderPairDataset: images/, pairs.csv (from,to), keypoints.json, parsing/<stem>.png.
    mydata = folder / "mydata"
    (mydata / "images").mkdir(parents=True)
    (mydata / "parsing").mkdir()
    keypoints = {}
    for seed in range(2):
        image, parsing = tiny_person(seed)
        image.save(mydata / "images" / f"p{seed}.jpg")
        PIL.Image.fromarray(parsing.astype(np.uint8)).save(mydata / "parsing" / f"p{seed}.png")
        keypoints[f"p{seed}.jpg"] = TINY_KEYPOINTS.tolist()
    with open(mydata / "pairs.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([["from", "to"], ["p0.jpg", "p1.jpg"], ["p1.jpg", "p0.jpg"]])
    (mydata / "keypoints.json").write_text(json.dumps(keypoints), encoding="utf-8")


def _prelude(name: str, index: int) -> dict:
    """The names the prose of the docs defines before a block."""
    source_image, source_parsing = tiny_person(0)
    photo, _ = tiny_person(1)
    if (name, index) == ("docs/inputs.md", 3):
        # The block's own 4-label table: background, shirt (ATR upper clothes, pants), skin (arms), head (hair, face).
        lookup = np.zeros(18, dtype=np.int64)
        lookup[[4, 6]], lookup[[14, 15]], lookup[[2, 11]] = 1, 2, 3
        source_parsing = lookup[source_parsing]
    return {
        "__name__": "__docs__",
        "pipe": tiny_pipeline(0),
        "source_image": source_image,
        "source": source_image,
        "photo": photo,
        "parsing": source_parsing,
        "source_parsing": source_parsing,
        "target_pose": TINY_KEYPOINTS.copy(),
        "target_keypoints": TINY_KEYPOINTS.copy(),
        "dataset": SyntheticPoseDataset(num_pairs=8, image_size=(64, 64)),
    }


@pytest.mark.parametrize(("name", "index"), BLOCKS, ids=[f"{name}[{index}]" for name, index in BLOCKS])
def test_docs_python_block_runs(name, index, tmp_path, monkeypatch, tiny_model_dir):
    if (name, index) in NOT_RUN:
        pytest.skip(NOT_RUN[name, index])
    blocks = _python_blocks(name)
    assert len(blocks) == BLOCK_COUNTS[name], f"{name} has {len(blocks)} python blocks; update BLOCK_COUNTS"
    code = blocks[index]
    for old, new in SUBSTITUTIONS.get((name, index), []):
        assert old in code, f"substitution {old!r} no longer matches {name} block {index}"
        code = code.replace(old, new)
    code = IMPLIED_IMPORTS.get((name, index), "") + code
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _write_fixtures(tmp_path, tiny_model_dir)
    exec(compile(code, f"{name}[python block {index}]", "exec"), _prelude(name, index))
