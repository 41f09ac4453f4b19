"""The pipeline class of this TruePose checkpoint, for diffusers' custom-pipeline loading:
``DiffusionPipeline.from_pretrained(this_folder_or_hub_id, trust_remote_code=True)``.

It only imports the class from the installed truepose package (``pip install truepose``);
``TruePosePipeline.from_pretrained(...)`` loads the same folder without it.
"""

from truepose.pipeline import TruePosePipeline

__all__ = ["TruePosePipeline"]
