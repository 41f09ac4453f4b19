"""TruePose: pose-guided person image synthesis with human-parsing-guided attention diffusion."""

__version__ = "0.1.0"

from .animation import TruePoseAnimationOutput, TruePoseAnimationPipeline, write_animation
from .models import CAAAttnProcessor, HPFAAttnProcessor, PoseEncoder, TargetNet, TruePoseDenoiser
from .pipeline import CUSTOM_PIPELINE, TruePosePipeline, TruePosePipelineOutput

__all__ = [
    "CUSTOM_PIPELINE",
    "CAAAttnProcessor",
    "HPFAAttnProcessor",
    "PoseEncoder",
    "TargetNet",
    "TruePoseAnimationOutput",
    "TruePoseDenoiser",
    "TruePoseAnimationPipeline",
    "TruePosePipeline",
    "TruePosePipelineOutput",
    "write_animation",
]
