"""The ``truepose`` command: generate, demo, animate, app, train, evaluate, metrics, preprocess."""

import argparse
import importlib
import math
import os
import sys

# Subcommands with their own argument parsers: name -> (module, help).
DELEGATED = {
    "train": ("truepose.train", "train or fine-tune TruePose (accelerate)"),
    "evaluate": ("truepose.evaluation.evaluate", "generate a test set and score it (FID, LPIPS, SSIM, PSNR)"),
    "metrics": ("truepose.evaluation.metrics", "score two folders of images"),
    "preprocess": ("truepose.data.preprocess", "cache parsing maps and keypoints for a folder of images"),
}


class UsageError(ValueError):
    """A mistake in the command line, reported as one line (no traceback without --debug)."""


def check_input_file(path: str | None, option: str) -> None:
    """Refuses a missing input file before any work."""
    if path is not None and not os.path.isfile(path):
        raise UsageError(f"{option} {path!r}: no such file.")


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def check_output_image(path: str, option: str = "--output") -> None:
    """Refuses, before any work, an output image whose folder does not exist or whose extension PIL cannot write."""
    import PIL.Image

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: the folder {folder!r} does not exist; create it first.")
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; name an image file, e.g. {os.path.join(path, 'out.png')!r}.")
    extensions = PIL.Image.registered_extensions()
    extension = os.path.splitext(path)[1].lower()
    if extensions.get(extension) not in PIL.Image.SAVE:
        raise UsageError(f"{option} {path!r}: unknown image extension {extension!r}; use .png, .jpg or .webp.")


def _load_pose(path: str):
    """A pose file: OpenPose JSON (first person) or .npy keypoints; anything else is read as an image."""
    import numpy as np
    import PIL.Image

    if path.endswith(".json"):
        from .conditioning.pose import read_openpose_json

        people = read_openpose_json(path)
        if not people:
            raise UsageError(f"--pose {path!r}: the OpenPose JSON has no person (`people` is empty).")
        return people[0]
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    return PIL.Image.open(path).convert("RGB")


def generate(args: argparse.Namespace) -> int:
    import numpy as np
    import PIL.Image
    import torch

    from .conditioning import get_label_map
    from .pipeline import TruePosePipeline

    check_output_image(args.output)
    for path, option in ((args.source, "--source"), (args.pose, "--pose"), (args.parsing, "--parsing")):
        check_input_file(path, option)
    get_label_map(args.label_map, "--label-map")
    source = PIL.Image.open(args.source).convert("RGB")
    pose = _load_pose(args.pose)
    parsing = np.asarray(PIL.Image.open(args.parsing)) if args.parsing else None  # read now: the file is closed
    dtype = torch.float16 if args.fp16 else torch.float32
    pipe = TruePosePipeline.from_pretrained(args.model, dtype=dtype).to(args.device)
    detector = None
    if args.pose_is_photo:
        from .conditioning.pose import PoseDetector

        detector = PoseDetector.from_pretrained(args.pose_detector).to(args.device)
    image = pipe(
        source,
        pose,
        source_parsing=parsing,
        parsing_label_map=args.label_map,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        target_pose_is_photo=args.pose_is_photo,
        pose_detector=detector,
        generator=torch.Generator(args.device).manual_seed(args.seed),
    ).images[0]
    image.save(args.output)
    print(f"wrote {args.output}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from .demo import DEMO_PAIR, run_demo

    check_output_image(args.output)
    seed = DEMO_PAIR if args.seed is None else args.seed
    path = run_demo(args.output, model=args.model, seed=seed, num_inference_steps=args.steps)
    print(f"wrote {path}")
    return 0


def animate(args: argparse.Namespace) -> int:
    import numpy as np
    import PIL.Image
    import torch

    from .animation import (
        VIDEO_SUFFIXES,
        TruePoseAnimationPipeline,
        interpolate_keypoints,
        load_pose_sequence,
        write_animation,
    )
    from .demo import example_person, load_shipped_model

    if (args.source is None) == (args.example_person is None):
        raise UsageError("give exactly one of --source and --example-person.")
    check_input_file(args.source, "--source")
    check_input_file(args.parsing, "--parsing")
    if args.model is None:
        pipe = TruePoseAnimationPipeline(**load_shipped_model().components)
    else:
        pipe = TruePoseAnimationPipeline.from_pretrained(args.model)
    pipe = pipe.to(args.device)
    if args.example_person is not None:
        person = example_person(args.example_person)
        source, parsing, label_map = person["source_image"], person["source_parsing"], person["label_map"]
    else:
        source = PIL.Image.open(args.source).convert("RGB")
        parsing = np.asarray(PIL.Image.open(args.parsing)) if args.parsing else None
        label_map = args.label_map
    detector = None
    if args.poses.lower().endswith(VIDEO_SUFFIXES):
        from .conditioning.pose import PoseDetector

        detector = PoseDetector.from_pretrained(args.pose_detector).to(args.device)
    poses = load_pose_sequence(args.poses, detector, frame_size=source.size[::-1])
    poses = interpolate_keypoints(poses, args.interpolate)
    num_frames = len(poses)
    generator = [torch.Generator(args.device).manual_seed(args.seed + i) for i in range(num_frames)]
    frames = pipe(
        source,
        poses,
        source_parsing=parsing,
        parsing_label_map=label_map,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        frames_per_batch=args.frames_per_batch,
        generator=generator if args.seed_per_frame else generator[0],
    ).frames
    print(f"wrote {write_animation(frames, args.output, fps=args.fps, scale=args.scale)} ({num_frames} frames)")
    return 0


def app(args: argparse.Namespace) -> int:
    from .app import launch

    launch(model=args.model, host=args.host, port=args.port, share=args.share, pose_detector=args.pose_detector)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truepose",
        description="Pose-guided person image synthesis (TruePose). Add --debug to see the traceback of an error.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="draw the source person in a target pose")
    gen.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    gen.add_argument("--source", required=True, help="source person image")
    gen.add_argument("--pose", required=True, help="skeleton image, keypoints (.npy / OpenPose .json) or a photo")
    gen.add_argument("--pose-is-photo", action="store_true", help="--pose is a photo; extract its pose")
    gen.add_argument("--pose-detector", default="lllyasviel/Annotators", help="OpenPose weights folder or Hub id")
    gen.add_argument("--parsing", help="source parsing map (PNG of label ids); else the model's parser is used")
    gen.add_argument("--label-map", default="atr", help="label table of --parsing: atr, lip, cihp, deepfashion")
    gen.add_argument("--output", required=True)
    gen.add_argument("--steps", type=positive_int, default=35)
    gen.add_argument("--guidance-scale", type=non_negative_float, default=2.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--fp16", action="store_true")
    gen.set_defaults(func=generate)

    dem = commands.add_parser("demo", help="offline demo on the shipped synthetic model")
    dem.add_argument("--output", default="demo.png")
    dem.add_argument("--model", default=None, help="default: the model shipped inside the package")
    dem.add_argument("--seed", type=int, default=None, help="held-out pair index and generator seed (default 3)")
    dem.add_argument("--steps", type=positive_int, default=25)
    dem.set_defaults(func=demo)

    ani = commands.add_parser("animate", help="animate one photo along a pose sequence (GIF, MP4 or PNG frames)")
    ani.add_argument("--model", default=None, help="checkpoint folder or Hub id; default: the shipped model")
    ani.add_argument("--source", help="source person image")
    ani.add_argument("--example-person", type=int, help="instead of --source: held-out synthetic person N")
    ani.add_argument("--parsing", help="source parsing map (PNG of label ids); else the model's parser is used")
    ani.add_argument("--label-map", default="atr", help="label table of --parsing: atr, lip, cihp, deepfashion")
    ani.add_argument("--poses", required=True, help="(T, 18, 2|3) .npy, folder of OpenPose .json frames, or a video")
    ani.add_argument("--pose-detector", default="lllyasviel/Annotators", help="OpenPose weights, for a video")
    ani.add_argument("--interpolate", type=int, default=0, help="frames interpolated between consecutive poses")
    ani.add_argument("--output", required=True, help="out.gif, out.mp4 or a folder for PNG frames")
    ani.add_argument("--fps", type=float, default=8)
    ani.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling of the frames, for viewing")
    ani.add_argument("--steps", type=int, default=25)
    ani.add_argument("--guidance-scale", type=float, default=2.0)
    ani.add_argument("--seed", type=int, default=0, help="one initial noise for every frame (steadier)")
    ani.add_argument("--seed-per-frame", action="store_true", help="frame i uses seed + i")
    ani.add_argument("--frames-per-batch", type=int, default=8)
    ani.add_argument("--device", default="cpu")
    ani.set_defaults(func=animate)

    ap = commands.add_parser("app", help="the web app (Gradio; pip install 'truepose[app]')")
    ap.add_argument("--model", default=None, help="checkpoint folder or Hub id; default: the shipped model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    ap.add_argument("--pose-detector", default=None, help="OpenPose weights (folder or Hub id) for pose photos")
    ap.set_defaults(func=app)

    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand. A user error (bad value, missing file, ...) prints one line and exits with status 2;
    ``--debug`` (anywhere on the line) shows the traceback instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    command = argv[0] if argv else "truepose"
    try:
        if argv and argv[0] in DELEGATED:
            return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"truepose {command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
