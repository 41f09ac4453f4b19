"""A set of hostile inputs against truepose (issue 24's acceptance check; none of them are the issue's own examples,
which live in tests/bad_inputs/): odd file contents and suffixes, empty files, folders where files belong, NaN/inf,
huge, negative and zero numbers, wrong types through the Python API and every command, unicode paths, symlink loops,
broken checkpoints.

Run: OMP_NUM_THREADS=1 python benchmarks/hostile_inputs.py   (about a minute on a 2-core CPU)

Each case is classified as
- clear:     ValueError / TypeError / OSError (or `truepose` exit status 2 with one line) naming the argument, flag or
             file given, raised before any work (before the pipeline's denoising / before any model load in a CLI);
- unclear:   such an error, but its message names none of them;
- crash:     any other exception, or a traceback;
- accepted:  no error at all (the input was silently taken).
"Before work" is checked by counting calls of TargetNet.forward (the denoiser): a clear error must come with 0.
"""

import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from truepose import TruePoseAnimationPipeline, TruePosePipeline  # noqa: E402
from truepose.cli import main as cli_main  # noqa: E402
from truepose.models import TargetNet  # noqa: E402
from truepose.testing import TINY_KEYPOINTS, tiny_person, tiny_pipeline  # noqa: E402

SOURCE, PARSING = tiny_person(0)
ROOT = Path(tempfile.mkdtemp(prefix="hostile-"))
FORWARD_CALLS = [0]
_forward = TargetNet.forward


def counting_forward(self, *args, **kwargs):
    FORWARD_CALLS[0] += 1
    return _forward(self, *args, **kwargs)


TargetNet.forward = counting_forward


def setup() -> TruePosePipeline:
    pipe = tiny_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(ROOT / "model")
    SOURCE.save(ROOT / "source.png")
    PIL.Image.fromarray(PARSING.astype(np.uint8)).save(ROOT / "parsing.png")
    np.save(ROOT / "pose.npy", TINY_KEYPOINTS)
    (ROOT / "empty.json").write_text("")
    (ROOT / "empty.npy").write_bytes(b"")
    (ROOT / "empty.png").write_bytes(b"")
    (ROOT / "null.json").write_text("null")
    (ROOT / "people-null.json").write_text('{"people": null}')
    (ROOT / "people-dict.json").write_text('{"people": {"0": []}}')
    (ROOT / "kp-strings.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": ["a"] * 54}]}))
    (ROOT / "kp-nested.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": TINY_KEYPOINTS.tolist()}]}))
    (ROOT / "nan.json").write_text('{"people": [{"pose_keypoints_2d": [' + ",".join(["NaN"] * 54) + "]}]}")
    (ROOT / "utf16.json").write_text(json.dumps({"people": []}), encoding="utf-16")
    (ROOT / "binary.json").write_bytes(os.urandom(300))
    np.save(ROOT / "float16.npy", TINY_KEYPOINTS.astype(np.float16))
    np.save(ROOT / "bool.npy", np.ones((18, 3), bool))
    np.save(ROOT / "scalar.npy", np.float32(3))
    np.save(ROOT / "zero-frames.npy", np.zeros((0, 18, 3), np.float32))
    np.save(ROOT / "4d.npy", np.zeros((1, 1, 18, 3), np.float32))
    np.save(ROOT / "inf.npy", np.full((18, 3), np.inf, np.float32))
    np.save(ROOT / "huge.npy", np.full((18, 3), 1e30, np.float32))
    np.save(ROOT / "structured.npy", np.zeros(18, dtype=[("x", "f4"), ("y", "f4")]))
    np.savez(ROOT / "archive.npz", pose=TINY_KEYPOINTS)
    shutil.copy(ROOT / "archive.npz", ROOT / "archive.npy")
    (ROOT / "pose.TXT").write_text("1 2\n" * 17)
    (ROOT / "pose.csv").write_text("x;y;c\n" * 18)
    (ROOT / "pose.yaml").write_text("nose: [1, 2]\n")
    (ROOT / "dir.npy").mkdir()
    (ROOT / "dir.png").mkdir()
    (ROOT / "frames-empty").mkdir()
    (ROOT / "frames-mixed").mkdir()
    (ROOT / "frames-mixed" / "a.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [0] * 54}]}))
    (ROOT / "frames-mixed" / "b.json").write_text("{")
    os.symlink(ROOT / "loop-a", ROOT / "loop-b")
    os.symlink(ROOT / "loop-b", ROOT / "loop-a")
    os.symlink(ROOT / "missing-target", ROOT / "dangling.npy")
    shutil.copy(ROOT / "pose.npy", ROOT / "pösé ☃.npy")
    (ROOT / "text.png").write_text("not a png")
    PIL.Image.new("RGB", (3, 3)).save(ROOT / "tiny.png")
    PIL.Image.new("RGBA", (64, 64)).save(ROOT / "rgba-parsing.png")
    PIL.Image.new("RGB", (64, 64), (200, 10, 10)).save(ROOT / "colour-parsing.png")
    PIL.Image.fromarray(PARSING.astype(np.uint8)).resize((64, 32)).save(ROOT / "wide-parsing.png")
    PIL.Image.fromarray(np.full((64, 64), 200, np.uint8)).save(ROOT / "unknown-ids.png")
    PIL.Image.fromarray(np.zeros((64, 64), np.uint8)).save(ROOT / "no-person.png")
    SOURCE.save(ROOT / "source.JPG", format="JPEG")
    (ROOT / "a-file").write_text("file")
    (ROOT / "label-map-bad.json").write_text(json.dumps({"labels": {"0": "bg"}, "groups": [], "regions": {}}))
    # broken checkpoints
    for name in (
        "ck-index-list",
        "ck-config-null",
        "ck-weights-dir",
        "ck-bin-garbage",
        "ck-pose-encoder-vae",
        "ck-scheduler-unknown",
        "ck-index-unicode",
    ):
        shutil.copytree(ROOT / "model", ROOT / name)
    (ROOT / "ck-index-list" / "model_index.json").write_text("[]")
    (ROOT / "ck-config-null" / "vae" / "config.json").write_text("null")
    weights = ROOT / "ck-weights-dir" / "pose_encoder" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    weights.mkdir()
    bin_file = ROOT / "ck-bin-garbage" / "vae" / "diffusion_pytorch_model.safetensors"
    bin_file.unlink()
    (bin_file.parent / "diffusion_pytorch_model.bin").write_bytes(os.urandom(2000))
    index = json.loads((ROOT / "model" / "model_index.json").read_text())
    index["pose_encoder"] = ["diffusers", "AutoencoderKL"]
    (ROOT / "ck-pose-encoder-vae" / "model_index.json").write_text(json.dumps(index))
    index = json.loads((ROOT / "model" / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "NoSuchScheduler"]
    (ROOT / "ck-scheduler-unknown" / "model_index.json").write_text(json.dumps(index))
    (ROOT / "ck-index-unicode" / "model_index.json").write_bytes(b"\xff\xfe\x00garbage")
    return pipe


def call(pipe, **kwargs):
    arguments = {"source_image": SOURCE, "target_pose": TINY_KEYPOINTS, "source_parsing": PARSING}
    arguments.update(num_inference_steps=1, output_type="latent")
    arguments.update(kwargs)
    return pipe(**arguments)


def animation(pipe):
    return TruePoseAnimationPipeline(**pipe.components)


def run_cli(argv):
    """Runs `truepose ARGV`; raises SystemExit-like info as (status, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli_main([str(a) for a in argv])
        except SystemExit as exit_info:
            status = exit_info.code
    return status, err.getvalue()


def cases(pipe):
    """(name, function, words one of which a clear message must contain)."""
    r = ROOT
    model = r / "model"
    gen = [
        "generate",
        "--model",
        model,
        "--source",
        r / "source.png",
        "--pose",
        r / "pose.npy",
        "--parsing",
        r / "parsing.png",
        "--output",
        r / "out.png",
        "--steps",
        "1",
    ]
    ani = [
        "animate",
        "--model",
        model,
        "--source",
        r / "source.png",
        "--parsing",
        r / "parsing.png",
        "--poses",
        r / "pose.npy",
        "--output",
        r / "out.gif",
        "--steps",
        "1",
    ]

    def with_(argv, flag, value):
        argv = list(argv)
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag] if value is None else [flag, value]
        return argv

    from truepose.animation import interpolate_keypoints, load_pose_sequence, write_animation
    from truepose.app import TruePoseApp, read_pose_file
    from truepose.conditioning import get_label_map, read_openpose_json

    app = TruePoseApp(pipe)
    pose_state = {"keypoints": TINY_KEYPOINTS, "frame": (64, 64)}
    app_settings = ("atr", pose_state, 2, 2.0, 0, "DDIM", 0.3, 0.6, 2, True)
    anim = animation(pipe)
    return [
        # --- pose files through every reader ---
        ("cli pose empty .json", lambda: run_cli(with_(gen, "--pose", r / "empty.json")), ["empty.json"]),
        ("cli pose empty .npy", lambda: run_cli(with_(gen, "--pose", r / "empty.npy")), ["empty.npy"]),
        ("cli pose JSON null", lambda: run_cli(with_(gen, "--pose", r / "null.json")), ["null.json"]),
        ("cli pose people null", lambda: run_cli(with_(gen, "--pose", r / "people-null.json")), ["people-null"]),
        ("cli pose people dict", lambda: run_cli(with_(gen, "--pose", r / "people-dict.json")), ["people-dict"]),
        ("cli pose keypoint strings", lambda: run_cli(with_(gen, "--pose", r / "kp-strings.json")), ["kp-strings"]),
        ("cli pose UTF-16 JSON", lambda: run_cli(with_(gen, "--pose", r / "utf16.json")), ["utf16.json"]),
        ("cli pose binary JSON", lambda: run_cli(with_(gen, "--pose", r / "binary.json")), ["binary.json"]),
        ("cli pose bool npy", lambda: run_cli(with_(gen, "--pose", r / "bool.npy")), ["bool.npy"]),
        ("cli pose scalar npy", lambda: run_cli(with_(gen, "--pose", r / "scalar.npy")), ["scalar.npy"]),
        ("cli pose 4-D npy", lambda: run_cli(with_(gen, "--pose", r / "4d.npy")), ["4d.npy"]),
        ("cli pose huge values", lambda: run_cli(with_(gen, "--pose", r / "huge.npy")), ["huge.npy", "--pose"]),
        ("cli pose structured npy", lambda: run_cli(with_(gen, "--pose", r / "structured.npy")), ["structured"]),
        ("cli pose npz named .npy", lambda: run_cli(with_(gen, "--pose", r / "archive.npy")), ["archive.npy"]),
        ("cli pose .TXT 17 rows", lambda: run_cli(with_(gen, "--pose", r / "pose.TXT")), ["pose.TXT"]),
        ("cli pose .csv with ;", lambda: run_cli(with_(gen, "--pose", r / "pose.csv")), ["pose.csv"]),
        ("cli pose .yaml", lambda: run_cli(with_(gen, "--pose", r / "pose.yaml")), ["pose.yaml"]),
        ("cli pose folder named .npy", lambda: run_cli(with_(gen, "--pose", r / "dir.npy")), ["dir.npy"]),
        ("cli pose symlink loop", lambda: run_cli(with_(gen, "--pose", r / "loop-a")), ["loop-a"]),
        ("cli pose dangling symlink", lambda: run_cli(with_(gen, "--pose", r / "dangling.npy")), ["dangling"]),
        ("app pose empty npy", lambda: read_pose_file(r / "empty.npy"), ["empty.npy"]),
        ("app pose NaN JSON (all missing)", lambda: read_pose_file(r / "nan.json"), None),
        ("app pose zero-frame npy", lambda: read_pose_file(r / "zero-frames.npy"), ["zero-frames"]),
        ("app pose folder", lambda: read_pose_file(r / "dir.npy"), ["dir.npy"]),
        ("openpose nested keypoints list", lambda: read_openpose_json(r / "kp-nested.json"), None),
        ("sequence empty folder", lambda: load_pose_sequence(r / "frames-empty"), ["frames-empty"]),
        ("sequence folder with a broken frame", lambda: load_pose_sequence(r / "frames-mixed"), ["b.json"]),
        ("sequence float16 npy", lambda: load_pose_sequence(r / "float16.npy"), None),
        ("sequence inf npy", lambda: load_pose_sequence(r / "inf.npy"), None),
        # --- images ---
        ("cli source empty png", lambda: run_cli(with_(gen, "--source", r / "empty.png")), ["--source"]),
        ("cli source text named png", lambda: run_cli(with_(gen, "--source", r / "text.png")), ["--source"]),
        ("cli source 3x3", lambda: run_cli(with_(gen, "--source", r / "tiny.png")), ["--source"]),
        ("cli source folder named .png", lambda: run_cli(with_(gen, "--source", r / "dir.png")), ["--source"]),
        ("cli source .JPG upper case", lambda: run_cli(with_(gen, "--source", r / "source.JPG")), None),
        ("cli parsing RGBA", lambda: run_cli(with_(gen, "--parsing", r / "rgba-parsing.png")), ["--parsing"]),
        ("cli parsing colour", lambda: run_cli(with_(gen, "--parsing", r / "colour-parsing.png")), ["--parsing"]),
        ("cli parsing other aspect", lambda: run_cli(with_(gen, "--parsing", r / "wide-parsing.png")), ["--parsing"]),
        ("cli parsing unknown ids", lambda: run_cli(with_(gen, "--parsing", r / "unknown-ids.png")), ["--parsing"]),
        ("cli parsing without a person", lambda: run_cli(with_(gen, "--parsing", r / "no-person.png")), ["parsing"]),
        ("cli unicode pose path", lambda: run_cli(with_(gen, "--pose", r / "pösé ☃.npy")), None),
        # --- generate options ---
        ("cli output empty string", lambda: run_cli(with_(gen, "--output", "")), ["--output"]),
        ("cli output under a file", lambda: run_cli(with_(gen, "--output", r / "a-file" / "o.png")), ["--output"]),
        ("cli output .GIF upper", lambda: run_cli(with_(gen, "--output", r / "o.GIF")), None),
        ("cli steps 1e3 text", lambda: run_cli(with_(gen, "--steps", "1e3")), ["--steps"]),
        ("cli steps -0", lambda: run_cli(with_(gen, "--steps", "-0")), ["--steps"]),
        ("cli guidance 1e309", lambda: run_cli(with_(gen, "--guidance-scale", "1e309")), ["--guidance-scale"]),
        ("cli seed 0x10", lambda: run_cli(with_(gen, "--seed", "0x10")), ["--seed"]),
        ("cli seed 2**70", lambda: run_cli(with_(gen, "--seed", str(2**70))), ["--seed"]),
        ("cli device cuda:99", lambda: run_cli(with_(gen, "--device", "cuda:99")), ["--device"]),
        ("cli device empty", lambda: run_cli(with_(gen, "--device", "")), ["--device"]),
        ("cli label map folder", lambda: run_cli(with_(gen, "--label-map", r)), ["--label-map"]),
        (
            "cli label map bad JSON file",
            lambda: run_cli(with_(gen, "--label-map", r / "label-map-bad.json")),
            ["label-map-bad"],
        ),
        ("cli pose-is-photo with keypoints", lambda: run_cli(with_(gen, "--pose-is-photo", None)), ["--pose"]),
        ("cli model is a file", lambda: run_cli(with_(gen, "--model", r / "a-file")), ["a-file"]),
        ("cli model empty string", lambda: run_cli(with_(gen, "--model", "")), ["model", "''"]),
        # --- broken checkpoints ---
        ("load model_index list", lambda: TruePosePipeline.from_pretrained(r / "ck-index-list"), ["model_index"]),
        ("load vae config null", lambda: TruePosePipeline.from_pretrained(r / "ck-config-null"), ["vae"]),
        (
            "load weights file is a folder",
            lambda: TruePosePipeline.from_pretrained(r / "ck-weights-dir"),
            ["pose_encoder"],
        ),
        ("load garbage .bin", lambda: TruePosePipeline.from_pretrained(r / "ck-bin-garbage"), ["vae"]),
        (
            "load VAE as pose_encoder",
            lambda: TruePosePipeline.from_pretrained(r / "ck-pose-encoder-vae"),
            ["pose_encoder"],
        ),
        (
            "load unknown scheduler",
            lambda: TruePosePipeline.from_pretrained(r / "ck-scheduler-unknown"),
            ["scheduler", "NoSuchScheduler"],
        ),
        (
            "load model_index not UTF-8",
            lambda: TruePosePipeline.from_pretrained(r / "ck-index-unicode"),
            ["model_index"],
        ),
        ("load a symlink loop", lambda: TruePosePipeline.from_pretrained(r / "loop-a"), ["loop-a"]),
        # --- animate ---
        ("animate fps 1e-300", lambda: run_cli(with_(ani, "--fps", "1e-300")), ["--fps"]),
        ("animate scale 100000", lambda: run_cli(with_(ani, "--scale", "100000")), ["--scale"]),
        (
            "animate frames-per-batch 1.5",
            lambda: run_cli(with_(ani, "--frames-per-batch", "1.5")),
            ["--frames-per-batch"],
        ),
        ("animate poses empty folder", lambda: run_cli(with_(ani, "--poses", r / "frames-empty")), ["--poses"]),
        ("animate poses symlink loop", lambda: run_cli(with_(ani, "--poses", r / "loop-a")), ["--poses"]),
        ("animate poses text video", lambda: run_cli(with_(ani, "--poses", r / "pose.yaml")), ["--poses"]),
        (
            "animate output .Gif under a file",
            lambda: run_cli(with_(ani, "--output", r / "a-file" / "x.Gif")),
            ["--output"],
        ),
        (
            "animate example person 10**12",
            lambda: run_cli(
                ["animate", "--example-person", str(10**12), "--poses", r / "pose.npy", "--output", r / "o.gif"]
            ),
            ["--example-person"],
        ),
        (
            "animate no source at all",
            lambda: run_cli(["animate", "--poses", r / "pose.npy", "--output", r / "o.gif"]),
            ["--source"],
        ),
        # --- other commands ---
        ("demo steps 0", lambda: run_cli(["demo", "--steps", "0"]), ["--steps"]),
        ("demo output .txt", lambda: run_cli(["demo", "--output", r / "demo.txt"]), ["--output"]),
        ("app port -1", lambda: run_cli(["app", "--port", "-1"]), ["--port"]),
        ("app max-image-side nan", lambda: run_cli(["app", "--max-image-side", "nan"]), ["--max-image-side"]),
        (
            "metrics same folder twice, not images",
            lambda: run_cli(["metrics", r / "frames-empty", r / "frames-empty", "--no-fid", "--no-lpips"]),
            ["frames-empty", "image"],
        ),
        ("metrics size 0x0", lambda: run_cli(["metrics", r, r, "--size", "0x0"]), ["--size", "size"]),
        ("metrics fid-dims 7", lambda: run_cli(["metrics", r, r, "--fid-dims", "7"]), ["--fid-dims"]),
        (
            "evaluate size nonsense",
            lambda: run_cli(
                ["evaluate", "--model", model, "--data-root", r, "--output-dir", r / "ev", "--size", "big"]
            ),
            ["size"],
        ),
        (
            "evaluate guidance nan",
            lambda: run_cli(
                ["evaluate", "--model", model, "--data-root", r, "--output-dir", r / "ev", "--guidance-scale", "nan"]
            ),
            ["--guidance-scale"],
        ),
        (
            "preprocess image dir is a file",
            lambda: run_cli(["preprocess", r / "a-file", r / "pp", "--parser", model]),
            ["a-file", "image_dir"],
        ),
        (
            "preprocess detector kind",
            lambda: run_cli(["preprocess", r, r / "pp", "--detector", model, "--detector-kind", "yolo"]),
            ["--detector-kind"],
        ),
        # --- Python API: wrong types and values ---
        ("call steps as a string", lambda: call(pipe, num_inference_steps="2"), ["num_inference_steps"]),
        ("call guidance complex", lambda: call(pipe, guidance_scale=1 + 2j), ["guidance_scale"]),
        ("call eta -inf", lambda: call(pipe, eta=-math.inf), ["eta"]),
        ("call height 7", lambda: call(pipe, height=7, width=64), ["height"]),
        ("call width as float 64.0", lambda: call(pipe, width=64.0), ["width"]),
        ("call output type 'PIL'", lambda: call(pipe, output_type="PIL"), ["output_type"]),
        ("call generator is an int", lambda: call(pipe, generator=0), ["generator"]),
        ("call latents numpy", lambda: call(pipe, latents=np.zeros((1, 4, 8, 8))), ["latents"]),
        ("call pose dict", lambda: call(pipe, target_pose={"nose": (1, 2)}), ["target_pose"]),
        ("call pose of 17 joints", lambda: call(pipe, target_pose=TINY_KEYPOINTS[:17]), ["target_pose"]),
        ("call parsing as a path", lambda: call(pipe, source_parsing=str(r / "parsing.png")), ["source_parsing"]),
        ("call label map None", lambda: call(pipe, parsing_label_map=None), ["parsing_label_map"]),
        ("call images per prompt 0", lambda: call(pipe, num_images_per_prompt=0), ["num_images_per_prompt"]),
        ("call callback not callable", lambda: call(pipe, callback_on_step_end=3), ["callback_on_step_end"]),
        (
            "animate frames_per_batch True",
            lambda: anim(
                SOURCE,
                np.stack([TINY_KEYPOINTS] * 2),
                source_parsing=PARSING,
                frames_per_batch=True,
                num_inference_steps=1,
            ),
            ["frames_per_batch"],
        ),
        (
            "animate poses empty array",
            lambda: anim(SOURCE, np.zeros((0, 18, 3)), source_parsing=PARSING, num_inference_steps=1),
            ["poses"],
        ),
        (
            "interpolate frames_between 1.5",
            lambda: interpolate_keypoints(np.stack([TINY_KEYPOINTS] * 2), 1.5),
            ["frames_between"],
        ),
        ("write_animation fps nan", lambda: write_animation([SOURCE], r / "w.gif", fps=math.nan), ["fps"]),
        ("write_animation empty frames", lambda: write_animation([], r / "w.gif"), ["frames"]),
        ("get_label_map a list", lambda: get_label_map(["atr"]), ["label_map"]),
        ("from_pretrained an int", lambda: TruePosePipeline.from_pretrained(42), ["42", "pretrained"]),
        ("save_pretrained to bytes path", lambda: pipe.save_pretrained(b"/tmp/x"), ["save_directory"]),
        # --- the app ---
        (
            "app 1500px source",
            lambda: app.generation_request(SOURCE.resize((1500, 1500)), PARSING, *app_settings),
            ["1024", "source photo"],
        ),
        (
            "app steps 10**9",
            lambda: app.generation_request(
                SOURCE, PARSING, "atr", pose_state, 10**9, 2.0, 0, "DDIM", 0.3, 0.6, 2, True
            ),
            ["Steps"],
        ),
        (
            "app seed nan",
            lambda: app.generation_request(
                SOURCE, PARSING, "atr", pose_state, 2, 2.0, math.nan, "DDIM", 0.3, 0.6, 2, True
            ),
            ["Seed"],
        ),
        (
            "app guidance inf",
            lambda: app.generate(
                app.generation_request(SOURCE, PARSING, "atr", pose_state, 1, math.inf, 0, "DDIM", 0.3, 0.6, 2, True)
            ),
            ["guidance"],
        ),
        (
            "app sigma -1",
            lambda: app.generation_request(SOURCE, PARSING, "atr", pose_state, 2, 2.0, 0, "DDIM", -1.0, 0.6, 2, True),
            ["sigma"],
        ),
        (
            "app top-k 1e6",
            lambda: app.generation_request(
                SOURCE, PARSING, "atr", pose_state, 2, 2.0, 0, "DDIM", 0.3, 0.6, 10**6, True
            ),
            ["top-k", "top_k"],
        ),
        (
            "app pose frame 0x0",
            lambda: app.skeleton({"keypoints": TINY_KEYPOINTS, "frame": (0, 0)}, SOURCE),
            ["height", "frame"],
        ),
    ]


def classify(function, words) -> tuple[str, str]:
    FORWARD_CALLS[0] = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = function()
    except (ValueError, TypeError, OSError) as error:
        message = f"{type(error).__name__}: {error}"
        return _judge(message, words, traceback_seen=False)
    except Exception as error:  # noqa: BLE001 - a crash is what we look for
        return "crash", f"{type(error).__name__}: {str(error)[:200]}"
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int | None):
        status, err = result
        if status == 0 or status is None:
            return "accepted", f"exit {status}"
        if "Traceback" in err:
            return "crash", err.strip().splitlines()[-1][:200]
        return _judge(f"exit {status}: {err.strip()}", words, traceback_seen=False)
    return "accepted", f"returned {type(result).__name__}"


def _judge(message: str, words, traceback_seen: bool) -> tuple[str, str]:
    if words is None:
        return "clear", message[:300]  # any clear refusal is fine where acceptance was also fine
    if FORWARD_CALLS[0]:
        return "unclear", f"(after {FORWARD_CALLS[0]} denoiser calls) {message[:300]}"
    if any(word.lower() in message.lower() for word in words):
        return "clear", message[:300]
    return "unclear", message[:300]


def main() -> int:
    pipe = setup()
    results = []
    for name, function, words in cases(pipe):
        kind, detail = classify(function, words)
        if words is None and kind == "accepted":
            kind = "clear"  # a legal input (e.g. upper-case suffix) that is accepted is the right outcome
            detail = "accepted (legal input): " + detail
        results.append((name, kind, detail))
        print(f"{kind:9s} {name}: {' '.join(detail.split())[:240]}", flush=True)
    counts = {kind: sum(1 for _, k, _ in results if k == kind) for kind in ("clear", "unclear", "crash", "accepted")}
    total = len(results)
    print(f"\n{total} cases: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"clear errors before work: {counts['clear'] / total:.1%}")
    shutil.rmtree(ROOT, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
