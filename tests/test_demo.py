import PIL.Image
import pytest

from truepose import demo


def test_demo_writes_source_skeleton_generated_and_truth(tiny_model, tmp_path):
    path = demo.run_demo(tmp_path / "demo.png", model=tiny_model, num_inference_steps=2, scale=2)
    height, width = demo.DEMO_RESOLUTION
    with PIL.Image.open(path) as image:
        assert image.size == (4 * width * 2, height * 2 + demo.LABEL_HEIGHT)


def test_shipped_model_runs_offline(tmp_path):
    if not (demo.SHIPPED_MODEL / "model_index.json").is_file():
        pytest.fail(f"the shipped model is missing from {demo.SHIPPED_MODEL}")
    path = demo.run_demo(tmp_path / "demo.png", num_inference_steps=5)
    with PIL.Image.open(path) as image:
        assert image.size == (4 * demo.DEMO_RESOLUTION[1] * 3, demo.DEMO_RESOLUTION[0] * 3 + demo.LABEL_HEIGHT)


def test_missing_shipped_model_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "SHIPPED_MODEL", tmp_path / "nothing")
    with pytest.raises(
        FileNotFoundError,
        match=r"Reinstall truepose.*docs/install.md, .The shipped demo model.*runs/decoder/studio-shipped",
    ):
        demo.load_shipped_model()


def test_demo_pair_is_one_of_the_figure_pairs():
    """`truepose demo` shows a pair of docs/install.md's 8-pair figure (picked by a fixed seed, not by hand)."""
    import numpy as np

    figure_pairs = sorted(np.random.default_rng(0).choice(200, 8, replace=False).tolist())
    assert demo.DEMO_PAIR == figure_pairs[0]


def test_docs_quote_the_shipped_model_results():
    """docs/install.md's learning table and the README's one-line summary are the numbers in
    docs/demo_model_results.json (what `examples/evaluate_demo_model.py` wrote), so a re-evaluation cannot leave
    them behind."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    results = json.loads((root / "docs/demo_model_results.json").read_text())["results"]
    table_rows = set()
    for line in (root / "docs/install.md").read_text().splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip().strip("|").split("|")]
        table_rows.add(tuple(cells[-6:]))
    for name, scores in results.items():
        formats = {"ssim": 4, "psnr": 2, "person_ssim": 4, "person_psnr": 2, "garment_delta_e": 2, "garment_edge_ssim": 4}  # fmt: skip
        row = tuple(f"{scores[column]:.{digits}f}" for column, digits in formats.items())
        assert row in table_rows, f"docs/install.md has no table row {row} for {name!r}"
    truepose, copy = results["TruePose (guidance 2.0)"], results["copy the source image"]
    summary = f"it scores SSIM {truepose['ssim']:.3f} where copying the source scores {copy['ssim']:.3f}"
    assert summary in " ".join((root / "README.md").read_text().split())


def test_example_people_are_studio_pairs_like_the_shipped_models_last_training():
    """`example_person` (the demo, the app, the docs) shows held-out pairs on light studio backgrounds, where the
    shipped model was last trained: the same people as the varied-background set, whose backgrounds are often dark."""
    import numpy as np

    from truepose.data import SyntheticPoseDataset

    for index in range(8):
        person = demo.example_person(index)
        varied = SyntheticPoseDataset(index + 1, demo.DEMO_RESOLUTION, demo.HELD_OUT_SEED)[index]
        background = np.asarray(person["source_parsing"]) == 0
        np.testing.assert_array_equal(np.asarray(person["source_parsing"]), np.asarray(varied["source_parsing"]))
        assert np.asarray(person["source_image"])[background].mean() > 200, index
