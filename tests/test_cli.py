"""`truepose` commands driven through `truepose.cli.main` on a tiny saved model: `generate` writes the image, `demo`
its figure. Bad options and files are in tests/bad_inputs/test_bad_commands.py; each feature's own command (animate,
preprocess, evaluate, metrics) is tested beside the feature."""

import PIL.Image

from truepose.cli import main


def test_demo_command(tiny_model, tmp_path, capsys):
    assert main(["demo", "--model", tiny_model, "--output", str(tmp_path / "d.png"), "--steps", "2"]) == 0
    assert "d.png" in capsys.readouterr().out and (tmp_path / "d.png").is_file()


def test_generate_command(tiny_model, tmp_path):
    import numpy as np

    from truepose.testing import TINY_KEYPOINTS, tiny_person

    image, parsing = tiny_person()
    image.save(tmp_path / "source.png")
    PIL.Image.fromarray(parsing.astype(np.uint8)).save(tmp_path / "parsing.png")
    np.save(tmp_path / "pose.npy", TINY_KEYPOINTS)
    out = tmp_path / "out.png"
    args = ["generate", "--model", tiny_model, "--source", str(tmp_path / "source.png"), "--pose"]
    args += [str(tmp_path / "pose.npy"), "--parsing", str(tmp_path / "parsing.png"), "--output", str(out)]
    assert main([*args, "--steps", "2"]) == 0
    with PIL.Image.open(out) as image:
        assert image.size == (64, 64)


def test_generate_without_model_uses_the_shipped_one(tmp_path):
    import numpy as np

    from truepose.demo import example_person

    person = example_person(3)
    person["source_image"].save(tmp_path / "source.png")
    PIL.Image.fromarray(person["source_parsing"].astype(np.uint8)).save(tmp_path / "parsing.png")
    np.save(tmp_path / "pose.npy", person["target_keypoints"])
    out = tmp_path / "out.png"
    args = ["generate", "--source", str(tmp_path / "source.png"), "--pose", str(tmp_path / "pose.npy")]
    args += ["--parsing", str(tmp_path / "parsing.png"), "--output", str(out), "--steps", "1"]
    assert main(args) == 0
    with PIL.Image.open(out) as image:
        assert image.size == person["source_image"].size


def test_help_and_a_missing_file_answer_before_torch_loads(tmp_path):
    """`truepose --help` and an argument error come back at once: the package imports torch and diffusers lazily."""
    import subprocess
    import sys

    code = (
        "import sys; from truepose.cli import main; "
        f"code = main(['generate', '--source', {str(tmp_path / 'nope.jpg')!r}, '--pose', 'p.npy', '--output', 'o.png']); "
        "print(code, 'torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr
    assert "--source" in result.stderr and "no such file" in result.stderr
