"""TruePose: pose-guided person image synthesis with human-parsing-guided attention diffusion.

The names below are imported on first use (like diffusers' own package), so ``truepose --help`` and a command's
argument errors answer before torch and diffusers load.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CUSTOM_PIPELINE": ".pipeline",
    "CAAAttnProcessor": ".models",
    "HPFAAttnProcessor": ".models",
    "PoseEncoder": ".models",
    "TargetNet": ".models",
    "TruePoseAnimationOutput": ".animation",
    "TruePoseAnimationPipeline": ".animation",
    "TruePoseDenoiser": ".models",
    "TruePosePipeline": ".pipeline",
    "TruePosePipelineOutput": ".pipeline",
    "write_animation": ".animation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
