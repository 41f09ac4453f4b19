"""The options of `truepose train` and the checks that refuse a run before any work: option values, what an option
needs installed or configured, the output folder, the checkpoint to resume from, and the launch."""

import argparse
import importlib
import os
import tempfile

from accelerate import Accelerator
from accelerate.utils import LoggerType
from diffusers.optimization import SchedulerType
from torch.distributed.fsdp import StateDictType

from .._errors import describe_error
from ..data import BACKGROUND_SETS
from .checkpoints import STEP_FILE, check_checkpoint_files, checkpoint_steps, latest_checkpoint, training_engine
from .lock import LOCK_NAME, lock_is_stale, lock_message, read_lock

# diffusers' schedulers that need no option truepose train does not have (piecewise_constant needs step rules).
LR_SCHEDULERS = [kind.value for kind in SchedulerType if kind != SchedulerType.PIECEWISE_CONSTANT]
REPORT_TO = ["none", *(kind.value for kind in LoggerType)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `truepose train`, with their defaults."""
    parser.add_argument(
        "--pretrained_model", required=True, help="TruePose checkpoint (folder or Hub id) to start from"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--dataset", choices=["synthetic", "deepfashion", "folder"], default="synthetic")
    parser.add_argument("--data_root", help="dataset root (deepfashion, folder)")
    parser.add_argument("--parsing_dir", help="parsing maps folder (deepfashion, folder)")
    parser.add_argument("--num_pairs", type=int, default=10_000, help="synthetic pairs")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument(
        "--synthetic_backgrounds",
        choices=BACKGROUND_SETS,
        default="varied",
        help="synthetic backgrounds: any colour, or plain light studio ones as DeepFashion's",
    )
    parser.add_argument("--resolution", type=int, nargs=2, default=[256, 176], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--train_batch_size", type=int, default=4)
    parser.add_argument("--max_train_steps", type=int, default=1000)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument(
        "--channels_last",
        action="store_true",
        help="keep the UNets', pose encoder's and VAE's weights in channels-last memory order (faster convolutions on "
        "CPU and most GPUs; the same numbers to float tolerance)",
    )
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--lr_scheduler", choices=LR_SCHEDULERS, default="constant_with_warmup")
    parser.add_argument("--lr_warmup_steps", type=int, default=0)
    parser.add_argument("--adam_weight_decay", type=float, default=1e-2)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes AdamW8bit (CUDA)")
    parser.add_argument("--use_ema", action="store_true")
    parser.add_argument("--ema_decay", type=float, default=0.9999)
    parser.add_argument("--condition_dropout", type=float, default=0.3)
    parser.add_argument("--prediction_type", choices=["epsilon", "v_prediction"], default=None)
    parser.add_argument("--freeze_source_unet", action="store_true")
    parser.add_argument("--lora_rank", type=int, default=0, help="train LoRA adapters (peft) on the UNets' attention")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataloader_num_workers", type=int, default=0)
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=None)
    parser.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder or "latest"')
    parser.add_argument("--validation_steps", type=int, default=0, help="0: no validation images")
    parser.add_argument("--num_validation_pairs", type=int, default=2)
    parser.add_argument(
        "--report_to",
        choices=REPORT_TO,
        default=None,
        help="default: tensorboard when it is installed (pip install 'truepose[train]'), else none",
    )
    parser.add_argument("--push_to_hub", action="store_true")
    parser.add_argument("--hub_model_id", default=None)


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (``parser.error``: exit status 2 and the usage) option values out of range or that do not go together,
    and options whose packages or settings are missing ([`check_environment`])."""
    if args.dataset != "synthetic" and not args.data_root:
        parser.error(f"--data_root is required for --dataset {args.dataset}")
    if not 0 <= args.condition_dropout < 1:
        parser.error(f"--condition_dropout must be in [0, 1), got {args.condition_dropout}")
    for name in ("train_batch_size", "max_train_steps", "gradient_accumulation_steps", "checkpointing_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in ("num_pairs", "num_validation_pairs", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be a positive integer, got {getattr(args, name)}")
    for name in ("lora_rank", "lr_warmup_steps", "validation_steps", "dataloader_num_workers"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if min(args.resolution) < 1:
        parser.error(f"--resolution must be two positive integers (height width), got {args.resolution}")
    if not args.learning_rate > 0 or not 0 < args.ema_decay < 1 or not args.max_grad_norm > 0:
        parser.error(
            "--learning_rate and --max_grad_norm must be > 0 and --ema_decay in (0, 1), got "
            f"{args.learning_rate}, {args.max_grad_norm}, {args.ema_decay}"
        )
    if not 0 <= args.seed < 2**32 or args.data_seed < 0:
        parser.error(f"--seed must be in [0, 2**32 - 1] and --data_seed >= 0, got {args.seed}, {args.data_seed}")
    if args.lr_scheduler == "polynomial" and args.learning_rate <= 1e-7:
        parser.error(
            f"--lr_scheduler polynomial decays to 1e-7: --learning_rate must be above it, got {args.learning_rate}"
        )
    check_environment(parser, args)


def check_environment(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that need something installed or configured, refused here rather than after the model loads
    (bitsandbytes, the --report_to tracker) or after training (--push_to_hub: token, repository id, network mode)."""
    from accelerate.tracking import get_available_trackers
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if args.use_8bit_adam:
        try:
            importlib.import_module("bitsandbytes")
        except Exception as error:
            parser.error(
                f"--use_8bit_adam needs bitsandbytes, which cannot be imported ({describe_error(error)}): "
                "pip install bitsandbytes (CUDA GPUs), or leave out --use_8bit_adam"
            )
    if args.report_to is None:
        args.report_to = "tensorboard" if LoggerType.TENSORBOARD in get_available_trackers() else "none"
    if args.report_to not in ("none", "all") and LoggerType(args.report_to) not in get_available_trackers():
        parser.error(
            f"--report_to {args.report_to}: the {args.report_to} package is not installed; install it "
            "(tensorboard comes with pip install 'truepose[train]'), or pass --report_to none"
        )
    if args.push_to_hub or args.hub_model_id:
        repo_id = args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir))
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            source = "--hub_model_id" if args.hub_model_id else "--push_to_hub: the --output_dir folder name"
            parser.error(
                f"{source} {repo_id!r} is not a valid Hub repository id ({error}); pass --hub_model_id user/name"
            )
    if args.push_to_hub:
        import huggingface_hub

        if huggingface_hub.constants.HF_HUB_OFFLINE:
            parser.error(
                "--push_to_hub cannot upload while HF_HUB_OFFLINE is set; unset it, or leave out --push_to_hub"
            )
        if huggingface_hub.get_token() is None:
            parser.error(
                "--push_to_hub needs a Hugging Face token, checked now because the upload comes after training: run "
                "`hf auth login` or set HF_TOKEN, or leave out --push_to_hub"
            )


def check_output_dir(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output folder that is (or is inside) the ``--pretrained_model`` folder, cannot be
    written, is locked by a run still writing there, or holds another run's checkpoints; and a checkpoint to resume
    from that is missing, incomplete, truncated or holds a pickle ([`check_checkpoint_files`])."""
    if os.path.isdir(args.pretrained_model):
        start, output = os.path.realpath(args.pretrained_model), os.path.realpath(args.output_dir)
        if os.path.commonpath([start, output]) == start:
            raise ValueError(
                f"--output_dir {args.output_dir!r} {'is' if output == start else 'is inside'} --pretrained_model "
                f"{args.pretrained_model!r}: training would overwrite the model it starts from. Choose an "
                "--output_dir outside it."
            )
    try:
        os.makedirs(args.output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.output_dir):
            pass
    except OSError as error:
        raise ValueError(f"--output_dir {args.output_dir!r} cannot be written: {error}") from None
    lock = read_lock(os.path.join(args.output_dir, LOCK_NAME))
    if lock is not None and not lock_is_stale(lock[1]):
        raise ValueError(lock_message(args.output_dir, lock[1]))
    check_no_other_checkpoints(args)
    resume = args.resume_from_checkpoint
    if resume == "latest":
        resume = latest_checkpoint(args.output_dir)
    elif resume and not os.path.isfile(os.path.join(resume, STEP_FILE)):
        raise ValueError(f"--resume_from_checkpoint {resume!r} does not exist (or is not a truepose checkpoint).")
    if resume:
        check_checkpoint_files(resume, args.use_ema)


def check_no_other_checkpoints(args: argparse.Namespace) -> None:
    """Refuse an ``--output_dir`` holding checkpoints when the run does not resume (it would mix two runs)."""
    steps = checkpoint_steps(args.output_dir)
    if steps and not args.resume_from_checkpoint:
        raise ValueError(
            f"--output_dir {args.output_dir!r} already holds checkpoints (steps {steps}). Pass "
            "--resume_from_checkpoint latest to continue that run, or choose a new --output_dir."
        )


def check_launch(accelerator: Accelerator, args: argparse.Namespace) -> None:
    """Refuse a launch that asked for several processes but started one (``accelerate launch --cpu
    --num_processes N`` runs a single process and would silently train N times slower than asked), and the options
    a sharded run (FSDP, DeepSpeed) cannot honour yet."""
    if accelerator.num_processes == 1 and "MASTER_PORT" in os.environ and "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "The launcher asked for several processes but started only this one (accelerate's --cpu launcher runs "
            "one process). For N processes on CPU run `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N -m "
            "truepose.train ...`; on GPUs `accelerate launch --multi_gpu --num_processes N -m truepose.train ...`."
        )
    engine = training_engine(accelerator)
    if engine == "DDP":
        return
    refused = {
        "--use_ema": "the EMA copy would be sharded too, and is saved and restored whole",
        "--validation_steps": "validation images are drawn by the main process alone, with whole weights",
    }
    for flag, reason in refused.items():
        if getattr(args, flag.removeprefix("--")):
            raise ValueError(f"{flag} does not work under {engine} yet ({reason}): leave it out, or train with DDP.")
    if engine == "DeepSpeed":
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        clipping = config.get("gradient_clipping", "auto")
        if clipping != "auto" and clipping != args.max_grad_norm:
            raise ValueError(
                f"The DeepSpeed config clips gradients at {clipping} and --max_grad_norm is {args.max_grad_norm}: "
                "DeepSpeed clips inside its engine, so set gradient_clipping to --max_grad_norm (or 'auto')."
            )
        accumulation = config.get("gradient_accumulation_steps", "auto")
        if accumulation != "auto" and accumulation != args.gradient_accumulation_steps:
            raise ValueError(
                f"The DeepSpeed config accumulates {accumulation} micro-batches and --gradient_accumulation_steps is "
                f"{args.gradient_accumulation_steps}: set gradient_accumulation_steps in the config to the same value "
                "(accelerate would otherwise take the config's)."
            )
    if engine == "FSDP":
        plugin = accelerator.state.fsdp_plugin
        if plugin.fsdp_version != 2:
            raise ValueError(
                "truepose train runs FSDP2 (fully_shard) only: set fsdp_version: 2 in the accelerate config."
            )
        if plugin.auto_wrap_policy is not None:
            raise ValueError(
                "Set fsdp_auto_wrap_policy: NO_WRAP: SourceNet's tokens leave its transformer blocks from inside (the "
                "self-attention inputs), so a block FSDP wraps on its own would be resharded before its backward."
            )
        if plugin.state_dict_type != StateDictType.FULL_STATE_DICT:
            raise ValueError(
                "Set fsdp_state_dict_type: FULL_STATE_DICT: the sharded checkpoints of torch.distributed.checkpoint "
                "keep their metadata as a pickle, and truepose never loads pickles."
            )
