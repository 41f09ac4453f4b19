"""The ``truepose`` command: generate, demo, train, evaluate, metrics, preprocess."""

import argparse
import importlib
import json
import sys

# Subcommands with their own argument parsers: name -> (module, help).
DELEGATED = {
    "train": ("truepose.train", "train or fine-tune TruePose (accelerate)"),
    "evaluate": ("truepose.evaluation.evaluate", "generate a test set and score it (FID, LPIPS, SSIM, PSNR)"),
    "metrics": ("truepose.evaluation.metrics", "score two folders of images"),
    "preprocess": ("truepose.data.preprocess", "cache parsing maps and keypoints for a folder of images"),
}


def _load_pose(path: str):
    """A pose file: OpenPose JSON (first person) or .npy keypoints; anything else is read as an image."""
    import numpy as np
    import PIL.Image

    if path.endswith(".json"):
        from .conditioning.pose import read_openpose_json

        with open(path) as f:
            return read_openpose_json(json.load(f))[0]
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    return PIL.Image.open(path).convert("RGB")


def generate(args: argparse.Namespace) -> int:
    import numpy as np
    import PIL.Image
    import torch

    from .pipeline import TruePosePipeline

    dtype = torch.float16 if args.fp16 else torch.float32
    pipe = TruePosePipeline.from_pretrained(args.model, dtype=dtype).to(args.device)
    detector = None
    if args.pose_is_photo:
        from .conditioning.pose import PoseDetector

        detector = PoseDetector.from_pretrained(args.pose_detector).to(args.device)
    parsing = np.asarray(PIL.Image.open(args.parsing)) if args.parsing else None
    image = pipe(
        PIL.Image.open(args.source).convert("RGB"),
        _load_pose(args.pose),
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
    from .demo import run_demo

    path = run_demo(args.output, model=args.model, seed=args.seed, num_inference_steps=args.steps)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="truepose", description="Pose-guided person image synthesis (TruePose).")
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
    gen.add_argument("--steps", type=int, default=35)
    gen.add_argument("--guidance-scale", type=float, default=2.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--fp16", action="store_true")
    gen.set_defaults(func=generate)

    dem = commands.add_parser("demo", help="offline demo on the shipped synthetic model")
    dem.add_argument("--output", default="demo.png")
    dem.add_argument("--model", default=None, help="default: the model shipped inside the package")
    dem.add_argument("--seed", type=int, default=0)
    dem.add_argument("--steps", type=int, default=25)
    dem.set_defaults(func=demo)

    for name, (_, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
