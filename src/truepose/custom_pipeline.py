"""[`TruePosePipeline`] for diffusers' custom-pipeline loading.

``DiffusionPipeline.from_pretrained(folder_or_hub_id, custom_pipeline=truepose.CUSTOM_PIPELINE, trust_remote_code=True)``
loads a TruePose checkpoint through diffusers' own entry point: diffusers copies this file into its module cache and
imports it, and it only re-exports the installed truepose's pipeline class (no other code runs).
"""

from truepose.pipeline import TruePosePipeline

__all__ = ["TruePosePipeline"]
