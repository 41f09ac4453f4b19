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


# The most frames `truepose animate` makes (after --interpolate): beyond it a typo (an extra zero) would keep a machine
# busy for hours; split a longer sequence into several runs.
MAX_ANIMATION_FRAMES = 1000
# Largest --seed (torch generators take 64-bit seeds) and --example-person / demo --seed (a synthetic pair index).
MAX_SEED = 2**63 - 1
MAX_PAIR_INDEX = 2**31 - 2
ANIMATION_SUFFIXES = (".gif", ".mp4")
# Written frames (after --scale) stay below this side; GIF frame times are whole milliseconds.
MAX_FRAME_SIDE = 8192
MIN_FPS, MAX_FPS = 0.01, 1000.0


class UsageError(ValueError):
    """A mistake in the command line, reported as one line (no traceback without --debug)."""


def check_input_file(path: str | None, option: str) -> None:
    """Refuses a missing input file (or a folder given as one) before any work."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; name a file.")
    if not os.path.isfile(path):
        raise UsageError(f"{option} {path!r}: no such file.")


def _integer(text: str, low: int, high: int | None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < low or high is not None and value > high:
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _integer(text, 1, None)


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _integer(text, 0, None)


def seed_int(text: str) -> int:
    """argparse type: a generator seed, an int from 0 to 2**63 - 1."""
    return _integer(text, 0, MAX_SEED)


def pair_index(text: str) -> int:
    """argparse type: a held-out synthetic pair index."""
    return _integer(text, 0, MAX_PAIR_INDEX)


def port_int(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    return _integer(text, 0, 65535)


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def check_device(device: str, option: str = "--device", allow_meta: bool = False) -> None:
    """Refuses, before any model is loaded, a device string torch cannot parse or a device this machine lacks (and
    the data-less meta device unless ``allow_meta``)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{option} {device!r} is not a torch device; use cpu, cuda, cuda:1 or mps.") from None
    if parsed.type == "meta" and not allow_meta:
        raise UsageError(f"{option} {device!r} holds no data; use cpu, cuda or mps.")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(
                f"{option} {device!r}: this machine has no CUDA GPU that torch can use; use --device cpu."
            )
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"{option} {device!r}: this machine has {count} CUDA GPU(s), numbered from 0.")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"{option} {device!r}: MPS (Apple GPU) is not available here; use --device cpu.")
    elif parsed.type not in ("cpu", "cuda", "mps", "meta"):
        backend = getattr(torch, parsed.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise UsageError(f"{option} {device!r}: no such device on this machine; use --device cpu.")


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


def check_output_file(path: str, option: str) -> None:
    """Refuses an output file that is a folder, or whose nearest existing parent is a file (folders that do not
    exist yet are created by the writer)."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder; name a file.")
    check_output_folder(os.path.dirname(os.path.abspath(path)), option, path)


def check_output_folder(path: str, option: str, given: str | None = None) -> None:
    """Refuses an output folder that is a file or lies under one (folders that do not exist yet are created)."""
    given = path if given is None else given
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {given!r}: {parent!r} is a file, not a folder.")


def check_animation_output(path: str, option: str = "--output") -> None:
    """Refuses, before any work, what `write_animation` would refuse after generating every frame: another suffix
    than .gif/.mp4/none, a missing folder, a file where the PNG-frame folder should be, or a missing video writer."""
    import importlib.util

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (*ANIMATION_SUFFIXES, ""):
        raise UsageError(f"{option} {path!r}: an animation is written as .gif, .mp4 or a folder (no suffix).")
    if suffix == "":
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{option} {path!r} is a file; PNG frames need a folder (no suffix) or use .gif/.mp4.")
    else:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise UsageError(f"{option} {path!r}: the folder {folder!r} does not exist; create it first.")
        if os.path.isdir(path):
            raise UsageError(f"{option} {path!r} is a folder; name a .gif or .mp4 file.")
    needed = ["imageio"] + (["av"] if suffix == ".mp4" else [])
    if any(importlib.util.find_spec(module) is None for module in needed):
        raise UsageError(f'{option} {path!r}: writing it needs imageio and PyAV: pip install "truepose[app]".')


def _open_image(path: str, option: str):
    """An image file read into memory (RGB not forced); an unreadable one is refused naming the option."""
    import PIL.Image

    try:
        with PIL.Image.open(path) as image:
            image.load()
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UsageError(f"{option} {path!r} is not an image PIL can read ({error}).") from None
    return image


def _open_source(path: str, option: str = "--source"):
    from .conditioning.image import to_8bit

    image = to_8bit(_open_image(path, option), option).convert("RGB")
    if min(image.size) < 8:
        raise UsageError(f"{option} {path!r} is {image.width}x{image.height} pixels; it needs at least 8 per side.")
    return image


def _open_parsing(path: str | None, label_map: str, size: tuple[int, int], option: str = "--parsing"):
    """The parsing map checked against its label map and the source size `(height, width)`, at its own size."""
    if path is None:
        return None
    from .conditioning import as_parsing_map, person_mask, same_aspect_ratio

    image = _open_image(path, option)
    if not same_aspect_ratio((image.height, image.width), size):
        raise UsageError(
            f"{option} {path!r} is {image.width}x{image.height} pixels but the source is {size[1]}x{size[0]}; the "
            "aspect ratios differ, so it cannot be the source's parsing map."
        )
    try:
        parsing = as_parsing_map(image, image.height, image.width, label_map, argument_name=option)
        person_mask(parsing, label_map, argument_name=option)  # an empty person: HPFA would weight nothing
    except ValueError as error:
        raise UsageError(f"{option} {path!r}: {error}") from None
    return parsing


def _load_pose(
    path: str,
    size: tuple[int, int],
    is_photo: bool = False,
    option: str = "--pose",
    pose_frame: tuple[int, int] | None = None,
):
    """A pose file: OpenPose JSON (first person) or keypoints (.npy/.txt/.csv, any case), fitted to the output
    `(height, width)` by the frame rule of `truepose.conditioning.pose_files` and checked; anything else is read as
    an image."""
    from .conditioning.keypoints import check_in_frame
    from .conditioning.pose_files import is_pose_file, read_pose_file_for

    if not is_pose_file(path):
        from .conditioning.image import to_8bit

        return to_8bit(_open_image(path, option), option).convert("RGB")
    if is_photo:
        raise UsageError(f"--pose-is-photo needs {option} to be a photo, got the keypoint file {path!r}.")
    try:
        poses = read_pose_file_for(path, size, pose_frame)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None
    if len(poses) > 1 and not path.lower().endswith(".json"):
        raise UsageError(
            f"{option} {path!r} holds {len(poses)} poses; generate takes one (truepose animate takes a sequence)."
        )
    check_in_frame(poses[0], *size, f"{option} {path!r}")
    return poses[0]


def _pose_detector(name: str, device: str):
    from .conditioning.loaders import load_pose_detector

    return load_pose_detector(name, device, "--detector")


def check_parsing_options(args: argparse.Namespace, model: str | None) -> None:
    """Before anything loads: the source's parsing map comes from exactly one of --parsing, --parser or the model's
    own parser (read from its model_index.json, no weights loaded; ``model`` None: the shipped model), and a
    --parser folder that does not exist is refused."""
    from .checkpoint import has_parser, read_model_index
    from .conditioning.loaders import PARSER_HUB_REPO, check_folder_exists
    from .demo import SHIPPED_MODEL

    if args.parsing is not None and args.parser is not None:
        raise UsageError("give one of --parsing (a parsing map) and --parser (a human parser), not both.")
    if args.parser is not None:
        check_folder_exists(args.parser, "--parser", PARSER_HUB_REPO)
    if args.parsing is None and args.parser is None and not has_parser(read_model_index(model or SHIPPED_MODEL)):
        name = "the shipped model" if model is None else f"--model {model!r}"
        raise UsageError(
            f"{name} has no human parser, so the source needs a parsing map: pass --parsing PARSING.png (label ids "
            f"of the source) or --parser PARSER (a human-parsing checkpoint, folder or Hub id, e.g. "
            f"{PARSER_HUB_REPO}; see docs/inputs.md)."
        )


def parse_source(parser: str, source, device: str, option: str = "--parser"):
    """The source's parsing map `(H, W)` and label table by the human parser ``parser`` (folder or Hub id); a map
    without a person is refused."""
    from .conditioning import person_mask
    from .conditioning.loaders import load_human_parser
    from .conditioning.parsing import parse_images

    model, processor, label_map = load_human_parser(parser, device, option)
    parsing = parse_images(model, processor, [source])[0]
    person_mask(parsing, label_map, argument_name=f"the parsing map {option} {parser!r} made of the source")
    return parsing, label_map


def write_parsing_overlay(path: str | None, source, parsing, label_map) -> None:
    """Writes the source with its parsing groups tinted (the app's overlay) to ``path``, when given."""
    if path is None:
        return
    from .app import parsing_overlay

    parsing_overlay(source, parsing, label_map).save(path)
    print(f"wrote {path}")


def generate(args: argparse.Namespace) -> int:
    # 1. Every option, and every input file, before the model loads (files first: no torch needed for those)
    check_output_image(args.output)
    if args.parsing_overlay is not None:
        check_output_image(args.parsing_overlay, "--parsing-overlay")
    for path, option in ((args.source, "--source"), (args.pose, "--pose"), (args.parsing, "--parsing")):
        check_input_file(path, option)
    import torch

    from .conditioning import get_label_map
    from .demo import SHIPPED_MODEL
    from .pipeline import TruePosePipeline

    get_label_map(args.label_map, "--label-map")
    check_device(args.device)
    source = _open_source(args.source)
    size = (source.height, source.width)
    pose = _load_pose(args.pose, size, is_photo=args.pose_is_photo, pose_frame=args.pose_frame)
    parsing, label_map = _open_parsing(args.parsing, args.label_map, size), args.label_map
    check_parsing_options(args, args.model)
    detector = _pose_detector(args.pose_detector, args.device) if args.pose_is_photo else None
    if args.parser is not None:
        parsing, label_map = parse_source(args.parser, source, args.device)

    # 2. The model, then the image
    dtype = torch.float16 if args.fp16 else torch.float32
    pipe = TruePosePipeline.from_pretrained(args.model or SHIPPED_MODEL, dtype=dtype).to(args.device)
    if parsing is None:  # the model's own parser
        (parsing,), label_map = pipe.parse_sources([source], None, label_map)
    write_parsing_overlay(args.parsing_overlay, source, parsing, label_map)
    image = pipe(
        source,
        pose,
        source_parsing=parsing,
        parsing_label_map=label_map,
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


def _animation_poses(args: argparse.Namespace, size: tuple[int, int]):
    """The pose sequence of --poses (interpolated), checked against the frame `(height, width)`."""
    from .animation import VIDEO_SUFFIXES, interpolate_keypoints, load_pose_sequence
    from .conditioning.keypoints import check_in_frame

    if not os.path.exists(args.poses):
        raise UsageError(f"--poses {args.poses!r}: no such file or folder.")
    detector = None
    if args.poses.lower().endswith(VIDEO_SUFFIXES):
        detector = _pose_detector(args.pose_detector, args.device)
    try:
        poses = load_pose_sequence(args.poses, detector, frame_size=size, pose_frame=args.pose_frame)
    except ValueError as error:
        raise UsageError(f"--poses: {error}") from None
    num_frames = (len(poses) - 1) * (args.interpolate + 1) + 1
    if num_frames > MAX_ANIMATION_FRAMES:
        raise UsageError(
            f"--poses {args.poses!r} with --interpolate {args.interpolate} makes {num_frames} frames; at most "
            f"{MAX_ANIMATION_FRAMES} per run (fewer frames between poses, or split the sequence)."
        )
    for i, pose in enumerate(poses):
        check_in_frame(pose, *size, f"--poses {args.poses!r} frame {i}")
    return interpolate_keypoints(poses, args.interpolate)


def animate(args: argparse.Namespace) -> int:
    # 1. Every option, the source and the whole pose sequence, before the model loads (files first: no torch needed)
    if (args.source is None) == (args.example_person is None):
        raise UsageError("give exactly one of --source and --example-person.")
    for option in ("parsing", "parser"):
        if args.example_person is not None and getattr(args, option) is not None:
            raise UsageError(f"--{option} goes with --source; an --example-person has its own parsing map.")
    check_animation_output(args.output)
    if args.parsing_overlay is not None:
        check_output_image(args.parsing_overlay, "--parsing-overlay")
    check_input_file(args.source, "--source")
    check_input_file(args.parsing, "--parsing")
    import torch

    from .animation import TruePoseAnimationPipeline, write_animation
    from .conditioning import get_label_map
    from .demo import example_person, load_shipped_model

    get_label_map(args.label_map, "--label-map")
    check_device(args.device)
    if args.example_person is not None:
        person = example_person(args.example_person)
        source, parsing, label_map = person["source_image"], person["source_parsing"], person["label_map"]
    else:
        source, label_map = _open_source(args.source), args.label_map
        parsing = _open_parsing(args.parsing, label_map, (source.height, source.width))
    size = (source.height, source.width)
    if max(size) * args.scale > MAX_FRAME_SIDE:
        raise UsageError(
            f"--scale {args.scale} makes {size[1] * args.scale}x{size[0] * args.scale} frames; at most "
            f"{MAX_FRAME_SIDE} pixels per side."
        )
    if not MIN_FPS <= args.fps <= MAX_FPS:
        raise UsageError(f"--fps {args.fps:g}: give a rate from {MIN_FPS:g} to {MAX_FPS:g} frames per second.")
    if args.output.lower().endswith(".mp4") and (size[0] * args.scale % 2 or size[1] * args.scale % 2):
        raise UsageError(
            f"--output {args.output!r}: MP4 needs an even frame size, got {size[1] * args.scale}x"
            f"{size[0] * args.scale} (--scale {args.scale}); use --scale 2, a .gif or an even-sized source."
        )
    poses = _animation_poses(args, size)
    if args.example_person is None:
        check_parsing_options(args, args.model)
    if args.parser is not None:
        parsing, label_map = parse_source(args.parser, source, args.device)

    # 2. The model, then the frames
    if args.model is None:
        pipe = TruePoseAnimationPipeline(**load_shipped_model().components)
    else:
        pipe = TruePoseAnimationPipeline.from_pretrained(args.model)
    pipe = pipe.to(args.device)
    if parsing is None:  # the model's own parser
        (parsing,), label_map = pipe.parse_sources([source], None, label_map)
    write_parsing_overlay(args.parsing_overlay, source, parsing, label_map)
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
    from .conditioning.detector import OPENPOSE_HUB_REPO
    from .conditioning.loaders import PARSER_HUB_REPO, check_folder_exists

    # the parser and detector folders before anything loads, in the command's words
    if args.parser is not None:
        check_folder_exists(args.parser, "--parser", PARSER_HUB_REPO)
    if args.pose_detector is not None:
        check_folder_exists(args.pose_detector, "--detector", OPENPOSE_HUB_REPO)
    from .app import launch

    # Gradio's own launch log ("set `share=True` in `launch()`") speaks to Python users: the command says its own
    blocks = launch(
        model=args.model,
        host=args.host,
        port=args.port,
        share=args.share,
        pose_detector=args.pose_detector,
        parser=args.parser,
        max_image_side=args.max_image_side,
        max_steps=args.max_steps,
        quiet=True,
        prevent_thread_lock=True,
    )
    print(f"truepose app: running on {blocks.local_url}")
    if blocks.share_url:
        print(f"truepose app: public link {blocks.share_url}")
    else:
        print("truepose app: pass --share for a public gradio.live link")
    print("truepose app: Ctrl+C stops it")
    blocks.block_thread()
    return 0


POSE_FRAME_HELP = (
    "HEIGHTxWIDTH of the image the keypoints of a .npy/.txt/.csv pose file were taken in (fitted to the source; "
    "default: OpenPose JSON's canvas size, else the source's size; see docs/inputs.md)"
)


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: ``HEIGHTxWIDTH`` in pixels, e.g. ``96x64``."""
    parts = text.lower().split("x")
    try:
        height, width = (int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HEIGHTxWIDTH in pixels, e.g. 96x64, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"must be HEIGHTxWIDTH with both sides >= 1, got {text!r}")
    return height, width


def _parsing_arguments(command: argparse.ArgumentParser) -> None:
    """The source-parsing options of generate and animate."""
    command.add_argument(
        "--parsing", help="source parsing map (PNG of label ids); else --parser, else the model's own parser"
    )
    command.add_argument("--label-map", default="atr", help="label table of --parsing: atr, lip, cihp, deepfashion")
    command.add_argument(
        "--parser", help="human parser (folder or Hub id, e.g. mattmdjaga/segformer_b2_clothes) that parses --source"
    )
    command.add_argument("--parsing-overlay", help="also write the source with its parsing tinted (PNG), to check it")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truepose",
        description="Pose-guided person image synthesis (TruePose). Add --debug to see the traceback of an error.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="draw the source person in a target pose")
    gen.add_argument("--model", default=None, help="checkpoint folder or Hub id; default: the shipped model")
    gen.add_argument("--source", required=True, help="source person image")
    gen.add_argument("--pose", required=True, help="skeleton image, keypoints (.npy / OpenPose .json) or a photo")
    gen.add_argument("--pose-is-photo", action="store_true", help="--pose is a photo; extract its pose")
    gen.add_argument(
        "--detector", "--pose-detector", dest="pose_detector", default="lllyasviel/Annotators",
        help="OpenPose weights (folder or Hub id) for --pose-is-photo",
    )  # fmt: skip
    _parsing_arguments(gen)
    gen.add_argument("--pose-frame", type=frame_size, help=POSE_FRAME_HELP)
    gen.add_argument("--output", required=True)
    gen.add_argument("--steps", type=positive_int, default=35)
    gen.add_argument("--guidance-scale", type=non_negative_float, default=2.0)
    gen.add_argument("--seed", type=seed_int, default=0)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--fp16", action="store_true")
    gen.set_defaults(func=generate)

    dem = commands.add_parser("demo", help="offline demo on the shipped synthetic model")
    dem.add_argument("--output", default="demo.png")
    dem.add_argument("--model", default=None, help="default: the model shipped inside the package")
    dem.add_argument(
        "--seed", type=pair_index, default=None, help="held-out pair index and generator seed (default 3)"
    )
    dem.add_argument("--steps", type=positive_int, default=25)
    dem.set_defaults(func=demo)

    ani = commands.add_parser("animate", help="animate one photo along a pose sequence (GIF, MP4 or PNG frames)")
    ani.add_argument("--model", default=None, help="checkpoint folder or Hub id; default: the shipped model")
    ani.add_argument("--source", help="source person image")
    ani.add_argument("--example-person", type=pair_index, help="instead of --source: held-out synthetic person N")
    _parsing_arguments(ani)
    ani.add_argument("--poses", required=True, help="(T, 18, 2|3) .npy, folder of OpenPose .json frames, or a video")
    ani.add_argument(
        "--detector", "--pose-detector", dest="pose_detector", default="lllyasviel/Annotators",
        help="OpenPose weights (folder or Hub id), for a video",
    )  # fmt: skip
    ani.add_argument("--pose-frame", type=frame_size, help=POSE_FRAME_HELP)
    ani.add_argument(
        "--interpolate",
        type=non_negative_int,
        default=0,
        help=f"frames interpolated between consecutive poses (at most {MAX_ANIMATION_FRAMES} frames in all)",
    )
    ani.add_argument("--output", required=True, help="out.gif, out.mp4 or a folder for PNG frames")
    ani.add_argument("--fps", type=positive_float, default=8)
    ani.add_argument("--scale", type=positive_int, default=1, help="nearest-neighbour upscaling of the frames")
    ani.add_argument("--steps", type=positive_int, default=25)
    ani.add_argument("--guidance-scale", type=non_negative_float, default=2.0)
    ani.add_argument("--seed", type=seed_int, default=0, help="one initial noise for every frame (steadier)")
    ani.add_argument("--seed-per-frame", action="store_true", help="frame i uses seed + i")
    ani.add_argument("--frames-per-batch", type=positive_int, default=8)
    ani.add_argument("--device", default="cpu")
    ani.set_defaults(func=animate)

    ap = commands.add_parser("app", help="the web app (Gradio; pip install 'truepose[app]')")
    ap.add_argument("--model", default=None, help="checkpoint folder or Hub id; default: the shipped model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=port_int, default=7860)
    ap.add_argument("--share", action="store_true", help="also serve on a public gradio.live link")
    ap.add_argument(
        "--detector", "--pose-detector", dest="pose_detector", default=None,
        help="OpenPose weights (folder or Hub id, e.g. lllyasviel/Annotators) for poses taken from photos",
    )  # fmt: skip
    ap.add_argument(
        "--parser", default=None,
        help="human parser (folder or Hub id, e.g. mattmdjaga/segformer_b2_clothes) that parses uploaded photos",
    )  # fmt: skip
    ap.add_argument(
        "--max-image-side",
        type=positive_int,
        default=1024,
        help="largest side (pixels) of a visitor's upload; larger ones are refused (default 1024)",
    )
    ap.add_argument("--max-steps", type=positive_int, default=100, help="most steps a visitor may ask for")
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
