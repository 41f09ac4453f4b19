from .attention import (
    CAAAttnProcessor,
    HPFAAttnProcessor,
    LayerReference,
    fused_reference_attention,
    hpfa_log_weights,
    select_low_attention_regions,
)
from .denoiser import TruePoseDenoiser
from .pose_encoder import PoseEncoder
from .target_net import SourceConditions, SourceReference, TargetNet, capture_reference_tokens, token_grid
