"""TruePoseDenoiser: the one trainable model of a training step (SourceNet, TargetNet and the pose encoder)."""

from dataclasses import replace

import torch
from diffusers.models import UNet2DConditionModel
from diffusers.models.modeling_utils import ModelMixin

from .pose_encoder import PoseEncoder
from .target_net import SourceReference, TargetNet, capture_reference_tokens


class TruePoseDenoiser(ModelMixin):
    r"""SourceNet, TargetNet and the pose encoder as one module, for training.

    Its ``forward`` runs a whole training step's model work: SourceNet reads the clean source latents, its tokens go
    to TargetNet's HPFA/CAA layers inside this forward (no side channel between separately wrapped models), the pose
    encoder reads the skeletons and TargetNet predicts the noise. So accelerate prepares, accumulates, clips,
    checkpoints and unwraps one model under DDP, FSDP or DeepSpeed. The frozen encoders (VAE, CLIP, parsing) stay in
    [`~TruePosePipeline.encode_source_conditions`], which inference shares. The components are the pipeline's own
    modules (not copies): the pipeline saves them as it always does.

    Parameters:
        source_unet ([`UNet2DConditionModel`]): SourceNet.
        target_unet ([`TargetNet`]): TargetNet.
        pose_encoder ([`PoseEncoder`]): the pose encoder.
    """

    _supports_gradient_checkpointing = True

    def __init__(self, source_unet: UNet2DConditionModel, target_unet: TargetNet, pose_encoder: PoseEncoder):
        super().__init__()
        self.source_unet = source_unet
        self.target_unet = target_unet
        self.pose_encoder = pose_encoder

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        image_embeds: torch.Tensor,
        source_latents: torch.Tensor,
        pose_pixels: torch.Tensor,
        person_mask: torch.Tensor,
        region_masks: torch.Tensor,
        region_embeds: torch.Tensor,
        source_dropped: torch.Tensor,
    ) -> torch.Tensor:
        """The noise (or velocity) prediction for ``noisy_latents``.

        Dropped rows keep the source keys with weight exactly 0 (a -inf bias) instead of skipping them, so SourceNet
        gets its (zero) gradient even when every row of a process is dropped, as data-parallel training needs.

        Args:
            noisy_latents (`torch.Tensor` of shape `(batch, 4, h, w)`): noised target latents.
            timesteps (`torch.Tensor` of shape `(batch,)`): their timesteps.
            image_embeds (`torch.Tensor` of shape `(batch, 1, dim)`): CLIP embeddings of the sources (0 when dropped).
            source_latents (`torch.Tensor` of shape `(batch, 4, h, w)`): scaled VAE latents of the sources.
            pose_pixels (`torch.Tensor` of shape `(batch, 3, H, W)`): target skeletons in [0, 1].
            person_mask, region_masks, region_embeds, source_dropped: as in [`SourceReference`].
        Returns:
            `torch.Tensor` of shape `(batch, 4, h, w)`.
        """
        # Inputs in each network's dtype: DeepSpeed casts the weights (bf16/fp16) but not the inputs.
        source_dtype, target_dtype = self.source_unet.dtype, self.target_unet.dtype
        source_latents = source_latents.to(source_dtype)
        bank = capture_reference_tokens(self.source_unet, source_latents, image_embeds.to(source_dtype))
        reference = SourceReference(bank, person_mask, region_masks, region_embeds.to(target_dtype), source_dropped)
        layer_references = self.target_unet.prepare_reference(reference, tuple(noisy_latents.shape[-2:]))
        layer_references = {name: replace(ref, num_source_free_rows=0) for name, ref in layer_references.items()}
        pose_features = self.pose_encoder(pose_pixels.to(self.pose_encoder.dtype))
        return self.target_unet(
            noisy_latents.to(target_dtype),
            timesteps,
            image_embeds.to(target_dtype),
            pose_features=pose_features,
            layer_references=layer_references,
        ).sample
