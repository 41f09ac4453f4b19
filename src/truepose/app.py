"""The TruePose web app (Gradio Blocks): ``truepose app`` or ``truepose.app.launch()``.

Source: an uploaded photo or an example person (synthetic renderer); parsing: an uploaded label map, the example
person's, or the human parser (the model's, or one given with ``parser``), computed when the photo is uploaded and
shown as an overlay of what HPFA weights. Target pose: the shipped gallery, an OpenPose JSON / keypoint file (fitted
to the source by the one frame rule of `truepose.conditioning.pose_files`), a photo (through a configured pose
detector) or another example person's pose. The attention shares of each generation are recorded while it runs
([`truepose.analysis.record_attention_shares`]). Images are shown upscaled (pixelated) at a readable size; the files
behind them, which the download buttons give, keep their own pixels.
"""

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

from .analysis import GROUP_COLOURS, group_masks, plot_attention_shares, record_attention_shares
from .conditioning import LABEL_MAPS, as_keypoints, draw_skeleton, rescale_keypoints
from .conditioning.image import load_image_file, to_8bit
from .conditioning.loaders import PARSER_HUB_REPO, check_folder_exists, load_human_parser, load_pose_detector
from .conditioning.pose_files import read_pose_file_for
from .demo import DEMO_RESOLUTION, example_person, load_pose_gallery, load_shipped_model
from .models.target_net import check_truepose_settings
from .pipeline import TruePosePipeline

SCHEDULERS = {
    "DDIM": DDIMScheduler,
    "Euler": EulerDiscreteScheduler,
    "DPM++ 2M": DPMSolverMultistepScheduler,
    "UniPC": UniPCMultistepScheduler,
}
NUM_EXAMPLE_PEOPLE = 6
# Defaults of what one visitor may ask for: a shared app must not be tied up by one huge request.
MAX_IMAGE_SIDE = 1024
MAX_STEPS = 100
# Errors the library raises for bad input; they reach the user as a message, never as a dead page.
USER_ERRORS = (ValueError, TypeError, OSError, PIL.UnidentifiedImageError)
# Small images are shown stretched to their panel without smoothing; the file served (and downloaded) is unchanged.
READABLE_CSS = (
    "<style>.readable img { object-fit: contain !important; image-rendering: pixelated; }"
    " #pose-gallery img { image-rendering: pixelated; }</style>"
)
READABLE_HEIGHT = 400  # pixels of a readable image panel
GALLERY_SCALE = 3  # the gallery's skeletons are drawn at 3x the gallery's 96x64 frame


def _gradio():
    try:
        import gradio
    except ImportError:
        raise ImportError('The web app needs Gradio: pip install "truepose[app]"') from None
    return gradio


def parsing_overlay(image: PIL.Image.Image, parsing: np.ndarray, label_map: Any = "atr") -> PIL.Image.Image:
    """The source with its parsing groups tinted (body, clothing, face) and the background dimmed: the person gets
    HPFA's weight ``1 + delta``, the dimmed part ``sigma``."""
    masks = group_masks(parsing, label_map)  # body, clothing, face, background
    pixels = np.asarray(to_8bit(image, "image").convert("RGB").resize(parsing.shape[::-1]), dtype=np.float32)
    tint = sum(m[..., None] * np.float32(GROUP_COLOURS[g]) for m, g in zip(masks[:3], ("body", "clothing", "face")))
    person = 1 - masks[3][..., None]
    out = person * (0.55 * pixels + 0.45 * tint) + (1 - person) * 0.35 * pixels
    return PIL.Image.fromarray(out.clip(0, 255).astype(np.uint8))


def named_upload(error: Exception, path: str | os.PathLike) -> ValueError:
    """``error`` about an uploaded file, with Gradio's cache path of the file replaced by the file's own name."""
    return ValueError(str(error).replace(repr(os.fspath(path)), repr(Path(path).name)))


def open_upload(upload: dict | None, what: str) -> PIL.Image.Image | None:
    """The RGB image of an upload as Gradio sends it unprocessed (``{"path": ..., "orig_name": ...}``), or None;
    a file that is not an image is refused in the app's words, naming the file."""
    if upload is None:
        return None
    path = upload["path"]
    try:
        return load_image_file(path)
    except PIL.UnidentifiedImageError:
        name = upload.get("orig_name") or Path(path).name
        raise ValueError(f"The {what} {name!r} is not an image: upload a PNG, JPEG or WebP photo.") from None
    except (OSError, ValueError) as error:
        raise named_upload(error, path) from None


class TruePoseApp:
    """The app's actions on one pipeline (kept apart from the layout so they can be called and tested directly).

    Args:
        pipe ([`TruePosePipeline`]): the model; its scheduler and HPFA/CAA settings are set per generation
            (generations run one at a time, see [`~TruePoseApp.settings_applied`]).
        pose_detector (*optional*): a [`~truepose.conditioning.PoseDetector`] for poses taken from photos.
        max_image_side (`int`, defaults to 1024): the largest side (pixels) of an uploaded source photo, pose photo
            or parsing map; larger uploads are refused with a message (the output has the source's size).
        max_steps (`int`, defaults to 100): the most denoising steps a visitor may ask for.
    """

    def __init__(
        self,
        pipe: TruePosePipeline,
        pose_detector: Any = None,
        max_image_side: int = MAX_IMAGE_SIDE,
        max_steps: int = MAX_STEPS,
    ):
        for name, value in (("max_image_side", max_image_side), ("max_steps", max_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        self.pipe = pipe
        self.pose_detector = pose_detector
        self.max_image_side = max_image_side
        self.max_steps = max_steps
        self.scheduler_config = pipe.scheduler.config
        self._settings_lock = threading.Lock()
        self.gallery = load_pose_gallery()
        pipe.set_progress_bar_config(disable=True)

    def check_upload_size(self, size: tuple[int, int], what: str) -> None:
        """Refuses an upload of `(width, height)` larger than `max_image_side`, in the app's own words."""
        if max(size) > self.max_image_side:
            raise ValueError(
                f"The {what} is {size[0]}x{size[1]} pixels; this app takes at most {self.max_image_side} pixels per "
                "side. Downscale it and upload it again."
            )

    def source_size(self, source: PIL.Image.Image | None) -> tuple[int, int]:
        """Output `(height, width)`: the source's size rounded down to the VAE factor (the demo size without one)."""
        if source is None:
            return DEMO_RESOLUTION
        factor = self.pipe.vae_scale_factor
        return max(factor, source.height // factor * factor), max(factor, source.width // factor * factor)

    def pose_in_frame(self, pose: dict | None, size: tuple[int, int]) -> np.ndarray:
        """The pose state's keypoints in pixels of the output frame."""
        if pose is None:
            raise ValueError("Pick a target pose first (gallery, pose file, photo or example person).")
        if tuple(pose["frame"]) == tuple(size):
            return pose["keypoints"]
        return rescale_keypoints(pose["keypoints"], pose["frame"], size)

    def skeleton(self, pose: dict, source: PIL.Image.Image | None) -> PIL.Image.Image:
        size = self.source_size(source)
        return draw_skeleton(self.pose_in_frame(pose, size), *size)

    def parse(self, source: PIL.Image.Image) -> tuple[np.ndarray, str] | None:
        """The parsing map `(H, W)` of ``source`` and its label table's name by the pipeline's human parser; None
        without a parser. A map without a person is refused."""
        if self.pipe.parser is None:
            return None
        self.check_upload_size(source.size, "source photo")
        (parsing,), label_map = self.pipe.parse_sources([to_8bit(source, "source photo").convert("RGB")], None, None)
        return parsing, label_map.name

    def pose_from_file(self, path: str | os.PathLike, source: PIL.Image.Image | None) -> dict:
        """The pose state of a pose file: its first pose fitted to the output frame by the one frame rule
        ([`~truepose.conditioning.pose_files.read_pose_file_for`]); errors name the file and the accepted formats."""
        size = self.source_size(source)
        try:
            keypoints = read_pose_file_for(path, size)[0]
        except ValueError as error:
            raise named_upload(error, path) from None
        return {"keypoints": keypoints, "frame": size}

    def pose_from_photo(self, photo: PIL.Image.Image, source: PIL.Image.Image | None) -> dict:
        if self.pose_detector is None:
            raise ValueError(
                "No pose detector is configured: start the app with `truepose app --detector PATH_OR_HUB_ID` "
                "(OpenPose weights), or pick a pose from the gallery or a file."
            )
        self.check_upload_size(photo.size, "pose photo")
        size = self.source_size(source)
        photo = to_8bit(photo, "pose photo").convert("RGB").resize(size[::-1], PIL.Image.BICUBIC)
        return {"keypoints": as_keypoints(self.pose_detector(photo), "detected pose"), "frame": size}

    def generation_request(
        self,
        source: PIL.Image.Image | None,
        parsing: np.ndarray | None,
        label_map: str,
        pose: dict | None,
        steps: float,
        guidance_scale: float,
        seed: float,
        scheduler: str,
        sigma: float,
        delta: float,
        top_k: float,
        hpfa: bool,
    ) -> dict:
        """Checks one visitor's inputs and returns the request of one generation: the pipeline's arguments, the
        ``seed`` and the model ``settings`` (scheduler, HPFA/CAA) that [`~TruePoseApp.generate`] puts on the
        pipeline while it runs. Changes nothing."""
        if source is None:
            raise ValueError("Upload a source photo or pick an example person first.")
        self.check_upload_size(source.size, "source photo")
        if parsing is None and self.pipe.parser is None:
            raise ValueError(
                "Upload the source's parsing map (a PNG of label ids) or pick an example person: this model has no "
                "human parser (start the app with `truepose app --parser PATH_OR_HUB_ID`, e.g. "
                f"{PARSER_HUB_REPO}, to parse uploaded photos)."
            )
        if scheduler not in SCHEDULERS:
            raise ValueError(f"Pick a scheduler among {', '.join(SCHEDULERS)}, got {scheduler!r}.")
        for name, value, low, high in (
            ("Steps", steps, 1, self.max_steps),
            ("Seed", seed, 0, 2**63 - 1),
            ("CAA top-k", top_k, 0, 64),
        ):
            if not isinstance(value, (int, float)) or not float(value).is_integer() or not low <= value <= high:
                raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
        height, width = self.source_size(source)
        sigma, delta = (float(sigma), float(delta)) if hpfa else (1.0, 0.0)  # 1, 0: plain reference attention
        check_truepose_settings(sigma, delta, int(top_k))
        return {
            "settings": {"scheduler": scheduler, "hpfa_sigma": sigma, "hpfa_delta": delta, "caa_top_k": int(top_k)},
            "source_image": to_8bit(source, "source photo").convert("RGB"),
            "target_pose": self.pose_in_frame(pose, (height, width)),
            "source_parsing": parsing,
            "parsing_label_map": label_map,
            "height": height,
            "width": width,
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance_scale),
            "seed": int(seed),
        }

    @contextlib.contextmanager
    def settings_applied(self, settings: dict) -> Iterator[None]:
        """Set the scheduler and the HPFA/CAA settings of one generation on the pipeline for the duration of the
        block. They are the pipeline's own (its scheduler, TargetNet's config), so the blocks of concurrent visitors
        run one at a time: one visitor's settings never reach another's generation."""
        with self._settings_lock:
            self.pipe.scheduler = SCHEDULERS[settings["scheduler"]].from_config(self.scheduler_config)
            self.pipe.target_unet.set_truepose_settings(
                hpfa_sigma=settings["hpfa_sigma"], hpfa_delta=settings["hpfa_delta"], caa_top_k=settings["caa_top_k"]
            )
            yield

    def generate(self, request: dict, progress: Any = None) -> tuple[PIL.Image.Image, dict[str, Any]]:
        """The image of a [`~TruePoseApp.generation_request`] and its attention shares, recorded during that one
        generation ([`~truepose.analysis.record_attention_shares`], all steps); ``progress(fraction)`` is called
        after every denoising step."""
        kwargs = dict(request)
        steps, seed, settings = kwargs["num_inference_steps"], kwargs.pop("seed"), kwargs.pop("settings")
        source, parsing, label_map = (
            kwargs.pop("source_image"),
            kwargs.pop("source_parsing"),
            kwargs.pop("parsing_label_map"),
        )
        with self.settings_applied(settings):
            recording, finish = record_attention_shares(
                self.pipe, source, parsing, label_map, steps, heatmap_layers=None,
                height=kwargs["height"], width=kwargs["width"],
            )  # fmt: skip
            record_step = recording.pop("callback_on_step_end")

            def report(pipe, step, timestep, callback_kwargs):
                callback_kwargs = record_step(pipe, step, timestep, callback_kwargs)
                if progress is not None:
                    progress((step + 1, steps), desc="denoising", unit="steps")
                return callback_kwargs

            output = self.pipe(
                source,
                **kwargs,
                **recording,
                generator=torch.Generator().manual_seed(seed),
                callback_on_step_end=report,
            )
        return output.images[0], finish()

    @staticmethod
    def attention_chart(shares: dict[str, Any]) -> PIL.Image.Image:
        """The chart of the attention ``shares`` of a generation ([`~TruePoseApp.generate`])."""
        return plot_attention_shares(shares, title="Where TargetNet looked (this generation, all steps)")


def build_app(
    pipe: TruePosePipeline,
    pose_detector: Any = None,
    max_image_side: int = MAX_IMAGE_SIDE,
    max_steps: int = MAX_STEPS,
):
    """The Gradio Blocks of the app, for ``pipe`` (with its ``parser``, if any, an uploaded photo is parsed at once);
    ``pose_detector``, ``max_image_side`` and ``max_steps`` as in [`TruePoseApp`]."""
    gr = _gradio()
    app = TruePoseApp(pipe, pose_detector, max_image_side=max_image_side, max_steps=max_steps)
    handlers = _event_handlers(gr, app)
    with gr.Blocks(title="TruePose", analytics_enabled=False) as blocks:
        gr.HTML(READABLE_CSS, container=False, padding=False)
        gr.Markdown(
            "# TruePose\nPose-guided person image synthesis with human-parsing-guided attention "
            "([arXiv 2502.03426](https://arxiv.org/abs/2502.03426))."
        )
        states = {name: gr.State(None) for name in ("parsing_state", "pose_state", "request_state", "chart_state")}
        with gr.Row():
            page = {
                **states,
                **_source_column(gr, parser=pipe.parser is not None),
                **_pose_column(gr, app),
                **_result_column(gr, pipe, max_steps),
            }
        _wire_events(page, handlers)
    return blocks


def _event_handlers(gr: Any, app: TruePoseApp) -> dict[str, Callable[..., Any]]:
    """The page's event handlers (name -> function) on ``app``'s actions; the library's errors for bad input reach
    the visitor as one message (``gr.Error``), never as a dead page."""

    def user_errors(function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except USER_ERRORS as error:
                raise gr.Error(str(error), print_exception=False) from None

        return wrapped

    @user_errors
    def pick_example_person(index):
        if index is None:  # the dropdown was cleared
            return gr.update(), gr.update(), gr.update(), gr.update()
        person = example_person(int(index))
        overlay = parsing_overlay(person["source_image"], person["source_parsing"], person["label_map"])
        return person["source_image"], person["source_parsing"], person["label_map"], overlay

    @user_errors
    def upload_source(upload):  # unprocessed: a file that is not an image gets the app's message
        source = open_upload(upload, "source photo")
        parsed = None if source is None else app.parse(source)
        if parsed is None:
            return None, gr.update(), None
        parsing, label_map = parsed
        return parsing, label_map, parsing_overlay(source, parsing, label_map)

    @user_errors
    def upload_parsing(path, source, label_map):
        if path is None:
            return None, None
        try:
            parsing = np.asarray(PIL.Image.open(path))
        except PIL.UnidentifiedImageError:
            raise ValueError(
                f"The parsing map {Path(path).name!r} is not an image: upload a PNG of label ids."
            ) from None
        if parsing.ndim != 2:
            raise ValueError(f"The parsing map must be a one-channel PNG of label ids, got shape {parsing.shape}.")
        app.check_upload_size(parsing.shape[::-1], "parsing map")
        return parsing, None if source is None else parsing_overlay(source, parsing, label_map)

    @user_errors
    def pick_gallery_pose(source, evt: gr.SelectData):
        pose = {"keypoints": app.gallery[evt.index], "frame": DEMO_RESOLUTION}
        return pose, app.skeleton(pose, source)

    @user_errors
    def upload_pose_file(path, source):
        if path is None:
            return None, None
        pose = app.pose_from_file(path, source)
        return pose, app.skeleton(pose, source)

    @user_errors
    def upload_pose_photo(upload, source_upload):  # unprocessed, as upload_source
        photo, source = open_upload(upload, "pose photo"), open_upload(source_upload, "source photo")
        if photo is None:
            return None, None
        pose = app.pose_from_photo(photo, source)
        return pose, app.skeleton(pose, source)

    @user_errors
    def pick_example_pose(index, source):
        if index is None:
            return gr.update(), gr.update()
        pose = {"keypoints": example_person(int(index))["source_keypoints"], "frame": DEMO_RESOLUTION}
        return pose, app.skeleton(pose, source)

    @user_errors
    def check_request(source, parsing, label_map, pose, steps, guidance, seed, scheduler, sigma, delta, top_k, hpfa):
        settings = (steps, guidance, seed, scheduler, sigma, delta, top_k, hpfa)
        return app.generation_request(source, parsing, label_map, pose, *settings)

    @user_errors
    def generate(request, progress=gr.Progress()):  # noqa: B008 - Gradio's progress tracker
        image, shares = app.generate(request, progress)
        return image, app.attention_chart(shares), gr.update(interactive=True)

    @user_errors
    def chart(recorded):
        if recorded is None:
            raise ValueError("Generate an image first.")
        return recorded

    return {
        function.__name__: function
        for function in (
            pick_example_person,
            upload_source,
            upload_parsing,
            pick_gallery_pose,
            upload_pose_file,
            upload_pose_photo,
            pick_example_pose,
            check_request,
            generate,
            chart,
        )
    }


def _readable_image(gr: Any, label: str, elem_id: str | None = None, **kwargs) -> Any:
    """An image panel that shows small images stretched to ``READABLE_HEIGHT`` pixels, unsmoothed; its file (and
    download) keeps the image's own pixels (PNG: Gradio's default WebP is lossy)."""
    return gr.Image(
        label=label, elem_id=elem_id, elem_classes="readable", height=READABLE_HEIGHT, format="png", **kwargs
    )


def _source_column(gr: Any, parser: bool) -> dict[str, Any]:
    """The source column: a photo or an example person, a parsing map and its label map, and the parsing overlay;
    with a ``parser``, the parsing of an uploaded photo comes from it."""
    with gr.Column():
        gr.Markdown("### Source")
        source = _readable_image(gr, "Source photo", "source", type="pil", image_mode=None)
        person = gr.Dropdown(list(range(NUM_EXAMPLE_PEOPLE)), value=None, label="…or an example person")
        what = "parsed by the human parser when uploaded; or upload" if parser else "upload"
        parsing_file = gr.File(
            label=f"Parsing map ({what} a PNG of label ids)", elem_id="parsing", file_types=["image"]
        )
        label_map = gr.Dropdown(list(LABEL_MAPS), value="atr", label="Label map of the parsing", elem_id="label-map")
        overlay = _readable_image(gr, "Parsing: what HPFA weights (person tinted)", "overlay", interactive=False)
    return {
        "source": source,
        "person": person,
        "parsing_file": parsing_file,
        "label_map": label_map,
        "overlay": overlay,
    }


def _pose_column(gr: Any, app: TruePoseApp) -> dict[str, Any]:
    """The target-pose column: the gallery of ``app`` (every pose visible and whole), a pose file, a photo or an
    example person's pose, and the skeleton of the chosen pose."""
    height, width = (GALLERY_SCALE * side for side in DEMO_RESOLUTION)
    with gr.Column():
        gr.Markdown("### Target pose")
        pose_gallery = gr.Gallery(
            [draw_skeleton(rescale_keypoints(pose, DEMO_RESOLUTION, (height, width)), height, width)
             for pose in app.gallery],
            label="Pose gallery (click one)",
            columns=3,  # gradio's thumbnails are at least 100 px wide: 3 fit a column, 8 poses in 3 rows
            height="auto",
            object_fit="contain",
            allow_preview=False,
            elem_id="pose-gallery",
        )  # fmt: skip
        pose_file = gr.File(label="…or an OpenPose JSON / keypoint file", elem_id="pose-file")
        what = "pose detector" if app.pose_detector is not None else "needs --detector"
        pose_photo = _readable_image(gr, f"…or a photo ({what})", "pose-photo", type="pil", image_mode=None)
        pose_person = gr.Dropdown(list(range(NUM_EXAMPLE_PEOPLE)), value=None, label="…or an example person's pose")
        skeleton = _readable_image(gr, "Target skeleton", "skeleton", interactive=False)
    return {
        "pose_gallery": pose_gallery,
        "pose_file": pose_file,
        "pose_photo": pose_photo,
        "pose_person": pose_person,
        "skeleton": skeleton,
    }


def _result_column(gr: Any, pipe: TruePosePipeline, max_steps: int) -> dict[str, Any]:
    """The result column: the settings (defaults: ``pipe``'s HPFA/CAA settings, at most ``max_steps`` steps), the
    generate button, the result and the attention-share chart. ``"settings"`` holds the settings' components in the
    order of [`TruePoseApp.generation_request`]."""
    config = pipe.target_unet.config
    with gr.Column():
        gr.Markdown("### Result")
        with gr.Accordion("Settings", open=True):
            steps = gr.Slider(1, max_steps, value=min(25, max_steps), step=1, label="Steps", elem_id="steps")
            guidance = gr.Slider(0, 10, value=2.0, step=0.1, label="Guidance scale")
            seed = gr.Number(0, precision=0, label="Seed", elem_id="seed")
            scheduler = gr.Dropdown(list(SCHEDULERS), value="DDIM", label="Scheduler")
            hpfa = gr.Checkbox(True, label="HPFA on (off: plain reference attention)")
            sigma = gr.Slider(0.05, 1.0, value=config.hpfa_sigma, label="HPFA σ (background)")
            delta = gr.Slider(0.0, 2.0, value=config.hpfa_delta, label="HPFA δ (person)")
            top_k = gr.Slider(0, 8, value=config.caa_top_k, step=1, label="CAA top-k")
        button = gr.Button("Generate", variant="primary", elem_id="generate")
        result = _readable_image(gr, "Generated", "result", interactive=False)
        chart_button = gr.Button("Attention shares of this generation", interactive=False, elem_id="chart")
        chart_image = gr.Image(label="Where TargetNet looked", interactive=False, elem_id="chart-image")
    return {
        "settings": [steps, guidance, seed, scheduler, sigma, delta, top_k, hpfa],
        "button": button,
        "result": result,
        "chart_button": chart_button,
        "chart_image": chart_image,
    }


def _wire_events(page: dict[str, Any], handlers: dict[str, Callable[..., Any]]) -> None:
    """Connects the components of ``page`` (the columns' and the states') to the ``handlers``. One user action is
    one event whose error is one message: progress (and Gradio's red "Error" badges on the outputs) shows only on
    the generation, whose inputs are checked first by an event of its own."""
    source, skeleton, overlay = page["source"], page["skeleton"], page["overlay"]
    parsing_state, pose_state = page["parsing_state"], page["pose_state"]
    quiet = {"show_progress": "hidden"}
    page["person"].change(
        handlers["pick_example_person"], page["person"], [source, parsing_state, page["label_map"], overlay], **quiet
    )
    source.upload(
        handlers["upload_source"], source, [parsing_state, page["label_map"], overlay], preprocess=False, **quiet
    ).failure(lambda: None, None, source, **quiet)  # a file that is not an image is not kept
    page["parsing_file"].change(
        handlers["upload_parsing"],
        [page["parsing_file"], source, page["label_map"]],
        [parsing_state, overlay],
        **quiet,
    )
    page["pose_gallery"].select(handlers["pick_gallery_pose"], source, [pose_state, skeleton], **quiet)
    page["pose_file"].change(
        handlers["upload_pose_file"], [page["pose_file"], source], [pose_state, skeleton], **quiet
    )
    page["pose_photo"].upload(
        handlers["upload_pose_photo"], [page["pose_photo"], source], [pose_state, skeleton], preprocess=False, **quiet
    ).failure(lambda: None, None, page["pose_photo"], **quiet)
    page["pose_person"].change(
        handlers["pick_example_pose"], [page["pose_person"], source], [pose_state, skeleton], **quiet
    )
    page["button"].click(
        handlers["check_request"],
        [source, parsing_state, page["label_map"], pose_state, *page["settings"]],
        page["request_state"],
        **quiet,
    ).success(handlers["generate"], page["request_state"], [page["result"], page["chart_state"], page["chart_button"]])
    page["chart_button"].click(handlers["chart"], page["chart_state"], page["chart_image"], **quiet)


def launch(
    model: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    pose_detector: str | os.PathLike | None = None,
    parser: str | os.PathLike | None = None,
    max_image_side: int = MAX_IMAGE_SIDE,
    max_steps: int = MAX_STEPS,
    **launch_kwargs,
):
    """Serve the app: ``model`` is a checkpoint folder or Hub id (the shipped model by default), ``pose_detector``
    OpenPose weights (folder or Hub id) for poses taken from photos, ``parser`` a human parser (folder or Hub id,
    e.g. ``mattmdjaga/segformer_b2_clothes``) that parses uploaded photos (in place of the model's own); a local
    folder that does not exist is refused before anything loads. ``max_image_side`` and ``max_steps`` limit what
    one visitor may ask for (see [`TruePoseApp`]). Extra keyword arguments go to ``gradio.Blocks.launch`` (e.g.
    ``prevent_thread_lock=True``, ``quiet=True``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = _gradio()
    for name, value in (("max_image_side", max_image_side), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise ValueError(f"`port` must be an int from 0 to 65535 (or None), got {port!r}.")
    # the parser and the detector before the model: a wrong path is found in seconds
    if parser is not None:
        check_folder_exists(parser, "`parser`", PARSER_HUB_REPO)
    if pose_detector is not None:
        check_folder_exists(pose_detector, "`pose_detector`", "lllyasviel/Annotators")
    human_parser = None if parser is None else load_human_parser(parser, argument="`parser`")
    detector = None if pose_detector is None else load_pose_detector(pose_detector, argument="`pose_detector`")
    pipe = load_shipped_model() if model is None else TruePosePipeline.from_pretrained(model, dtype=torch.float32)
    if human_parser is not None:
        pipe.parser, pipe.parser_processor, _ = human_parser
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    blocks = build_app(pipe, detector, max_image_side=max_image_side, max_steps=max_steps)
    blocks.queue()
    blocks.launch(server_name=host, server_port=port, share=share, theme=theme, **launch_kwargs)
    return blocks
