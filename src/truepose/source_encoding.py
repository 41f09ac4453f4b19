"""The source side of a call: the sources parsed and encoded once per call (CLIP, parsing masks and regions, VAE
latents, SourceNet's tokens).

[`SourceEncodingMixin`] gives [`TruePosePipeline`] (and the animation pipeline) ``encode_source_conditions`` (the
frozen encoders, which training shares) and ``encode_source`` (those plus SourceNet's tokens).
"""

from typing import Any

import numpy as np
import PIL.Image
import torch

from .conditioning import as_parsing_batch
from .conditioning import parsing as parsing_utils
from .latents import vae_lock
from .models import SourceConditions, SourceReference, capture_reference_tokens


class SourceEncodingMixin:
    """Source encoding for a pipeline with ``vae``, ``image_encoder``, ``feature_extractor``, ``image_processor``,
    ``source_unet``, ``target_unet`` and an optional ``parser``/``parser_processor``."""

    # Adapted from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.StableDiffusionPipeline.encode_image
    def encode_image(self, images: list[PIL.Image.Image], device: torch.device) -> torch.Tensor:
        """CLIP image embeddings `(len(images), 1, projection_dim)`."""
        pixel_values = self.feature_extractor(images=images, return_tensors="pt").pixel_values
        pixel_values = pixel_values.to(device=device, dtype=self.image_encoder.dtype)
        return self.image_encoder(pixel_values).image_embeds[:, None, :]

    def parse_sources(
        self, sources: list[PIL.Image.Image], source_parsing: Any, label_map: Any
    ) -> tuple[list[np.ndarray], parsing_utils.LabelMap]:
        """Label-id maps `(H, W)` of the sources, from ``source_parsing`` (as a call takes it) or the pipeline's
        parser; a map without a person is refused."""
        parsing_batch = None if source_parsing is None else as_parsing_batch(source_parsing, "source_parsing")
        maps, label_map, _ = self._parse_source_batch(sources, parsing_batch, label_map)
        return maps, label_map

    def _parse_source_batch(
        self, sources: list[PIL.Image.Image], source_parsing: list | None, label_map: Any
    ) -> tuple[list[np.ndarray], parsing_utils.LabelMap, list[np.ndarray]]:
        """[`~TruePosePipeline.parse_sources`] of parsing maps already split per source ([`CanonicalInputs`]), with
        the sources' person masks `(H, W)` (bool), which the check computes and [`~TruePosePipeline.encode_source`]
        reuses."""
        if source_parsing is None:
            maps = parsing_utils.parse_images(self.parser, self.parser_processor, sources)
            label_map = parsing_utils.label_map_from_id2label(self.parser.config.id2label)
            names = ["source_parsing"] * len(maps)
        else:
            label_map = parsing_utils.get_label_map(label_map, "parsing_label_map")
            width, height = sources[0].size
            count = len(source_parsing)
            names = ["source_parsing"] if count == 1 else [f"source_parsing[{i}]" for i in range(count)]
            maps = [
                parsing_utils.as_parsing_map(m, height, width, label_map, argument_name=n)
                for m, n in zip(source_parsing, names)
            ]
        # no person: HPFA would weight nothing
        person_masks = [parsing_utils.person_mask(m, label_map, argument_name=n) for m, n in zip(maps, names)]
        return maps, label_map, person_masks

    def encode_parsing(
        self,
        sources: list[PIL.Image.Image],
        parsing_maps: list[np.ndarray],
        label_map: parsing_utils.LabelMap,
        device: torch.device,
        person_masks: list[np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """HPFA person masks, CAA region masks and the regions' CLIP embeddings.

        ``person_masks`` (`(H, W)` bool, one per map), where already computed ([`~TruePosePipeline.parse_sources`]
        checks them), are used as they are.

        Returns:
            person masks `(batch, 1, H, W)`, region masks `(batch, R, H, W)` (all-zero rows pad to the largest region
            count, ``R >= 1``) and region embeddings `(batch, R, dim)`, at the parsing maps' size `(H, W)`.
        """
        if person_masks is None:
            person_masks = [parsing_utils.person_mask(parsing, label_map) for parsing in parsing_maps]
        region_masks, crops = [], []
        for source, parsing in zip(sources, parsing_maps):
            region_masks.append(parsing_utils.region_masks(parsing, label_map)[1])
            crops += parsing_utils.region_crops(source, region_masks[-1])
        counts = [len(masks) for masks in region_masks]
        height, width = parsing_maps[0].shape
        padded_masks = np.zeros((len(sources), max(1, *counts), height, width), dtype=np.float32)
        for i, masks in enumerate(region_masks):
            padded_masks[i, : len(masks)] = masks
        embed_dim = self.image_encoder.config.projection_dim
        region_embeds = torch.zeros(len(sources), padded_masks.shape[1], embed_dim, device=device)
        if crops:
            for i, embeds in enumerate(self.encode_image(crops, device)[:, 0].split(counts)):
                region_embeds[i, : len(embeds)] = embeds
        person_mask = torch.from_numpy(np.stack(person_masks)[:, None].astype(np.float32)).to(device)
        return person_mask, torch.from_numpy(padded_masks).to(device), region_embeds

    def encode_source_latents(
        self,
        sources: list[PIL.Image.Image],
        height: int,
        width: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Scaled VAE latents `(batch, 4, height / f, width / f)` of images resized to (height, width).

        The posterior's mode, or a sample drawn with ``generator`` when one is given (training targets); an
        [`AutoencoderTiny`] and [`AutoencoderDC`] give their latents as they are.
        """
        images = [source.resize((width, height), PIL.Image.BICUBIC) for source in sources]
        pixel_values = self.image_processor.preprocess(images, height, width).to(device=device, dtype=self.vae.dtype)
        with vae_lock(self.vae):  # a float16 VAE may be upcast by a decode in another thread
            encoded = self.vae.encode(pixel_values)
        if hasattr(encoded, "latent_dist"):  # AutoencoderKL; AutoencoderTiny and AutoencoderDC are deterministic
            latents = encoded.latent_dist.mode() if generator is None else encoded.latent_dist.sample(generator)
        else:
            latents = encoded.latents if hasattr(encoded, "latents") else encoded.latent
        return latents * self.vae.config.scaling_factor

    def encode_source_conditions(
        self,
        sources: list[PIL.Image.Image],
        parsing_maps: list[np.ndarray],
        label_map: parsing_utils.LabelMap,
        height: int,
        width: int,
        device: torch.device,
        source_dropped: torch.Tensor | None = None,
        person_masks: list[np.ndarray] | None = None,
    ) -> SourceConditions:
        """The frozen encoders' part of the source encoding (CLIP, VAE, parsing masks and regions), without
        gradients: SourceNet's inputs and what TargetNet reads beside SourceNet's tokens.

        The one source encoding of inference and training: [`~TruePosePipeline.encode_source`] adds SourceNet's
        tokens; ``truepose.train`` hands these conditions, with its condition dropout, to [`TruePoseDenoiser`], which
        runs SourceNet inside the trained model.

        Args:
            sources: RGB source images; parsing_maps: their label-id maps `(H, W)` in ``label_map``'s labels.
            height, width: the size the sources are encoded at (the output size).
            source_dropped (`torch.Tensor` of shape `(batch,)`, bool, *optional*): rows that must not see the source
                (condition dropout): their CLIP embedding is zero, also for SourceNet. None: no row dropped.
            person_masks (`list[np.ndarray]`, *optional*): the maps' person masks `(H, W)` where already computed
                (a call's parsing check computes them); computed from ``parsing_maps`` otherwise.
        Returns:
            [`SourceConditions`]; the latents in SourceNet's dtype, the region embeddings in TargetNet's, the image
            embeddings in the image encoder's.
        """
        if source_dropped is None:
            source_dropped = torch.zeros(len(sources), dtype=torch.bool, device=device)
        with torch.no_grad():
            image_embeds = self.encode_image(sources, device).masked_fill(source_dropped[:, None, None], 0.0)
            person_mask, region_masks, region_embeds = self.encode_parsing(
                sources, parsing_maps, label_map, device, person_masks
            )
            source_latents = self.encode_source_latents(sources, height, width, device)
        return SourceConditions(
            image_embeds=image_embeds,
            source_latents=source_latents.to(self.source_unet.dtype),
            person_mask=person_mask,
            region_masks=region_masks,
            region_embeds=region_embeds.to(self.target_unet.dtype),
            source_dropped=source_dropped,
        )

    def encode_source(
        self,
        sources: list[PIL.Image.Image],
        parsing_maps: list[np.ndarray],
        label_map: parsing_utils.LabelMap,
        height: int,
        width: int,
        device: torch.device,
        person_masks: list[np.ndarray] | None = None,
    ) -> tuple[SourceReference, torch.Tensor]:
        """Everything computed once per call from the sources: [`~TruePosePipeline.encode_source_conditions`] and
        SourceNet's tokens ([`capture_reference_tokens`], under the caller's grad mode).

        Returns:
            A [`SourceReference`] for the sources and their CLIP embeddings `(batch, 1, dim)`.
        """
        conditions = self.encode_source_conditions(
            sources, parsing_maps, label_map, height, width, device, person_masks=person_masks
        )
        image_embeds = conditions.image_embeds.to(self.source_unet.dtype)
        bank = capture_reference_tokens(self.source_unet, conditions.source_latents, image_embeds)
        return conditions.reference(bank), conditions.image_embeds
