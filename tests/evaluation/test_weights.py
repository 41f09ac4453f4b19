"""Weight files and the networks loaded from them (`truepose.evaluation.weights`): where files are looked for, what a
missing or wrong file says, tensors-only unpickling, the LPIPS and FID backbones and their feature extractors
(against torchvision and pytorch-fid)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluation_helpers import pytorch_fid_reference_model, save_images

from truepose.evaluation import metrics, weights


class RunsCode:
    """A pickle that would call `print` when unpickled with arbitrary objects allowed."""

    def __reduce__(self):
        return print, ("unpickling ran code",)


def test_missing_weights_raise_clear_errors(tmp_path, monkeypatch, alexnet_weights, no_weight_files):
    with pytest.raises(FileNotFoundError) as error:
        metrics.load_lpips()
    message = str(error.value)
    assert metrics.ALEXNET_FILENAME in message and metrics.ALEXNET_URL in message
    assert str(no_weight_files) in message
    with pytest.raises(FileNotFoundError) as error:
        metrics.load_inception(tmp_path / "missing.pth")
    message = str(error.value)
    assert metrics.INCEPTION_FILENAME in message and metrics.INCEPTION_URL in message and "missing.pth" in message

    # The env var, a folder holding the file, and the torch hub cache are all accepted.
    monkeypatch.setenv(metrics.ALEXNET_ENV, alexnet_weights)
    metrics.load_lpips()
    monkeypatch.delenv(metrics.ALEXNET_ENV)
    metrics.load_lpips(os.path.dirname(alexnet_weights))
    no_weight_files.mkdir(parents=True)
    shutil.copy(alexnet_weights, no_weight_files / metrics.ALEXNET_FILENAME)
    metrics.load_lpips()


def test_wrong_weight_file_is_rejected(tmp_path):
    path = tmp_path / metrics.ALEXNET_FILENAME
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        metrics.load_lpips(path)


def test_a_missing_weight_file_says_where_it_was_looked_for(no_weight_files, tmp_path, monkeypatch):
    spec = metrics.WEIGHT_FILES["lpips"]
    advice = (
        f"Nothing is downloaded at evaluation time: fetch it once from {metrics.ALEXNET_URL} and either put it at "
        f"{str(no_weight_files / metrics.ALEXNET_FILENAME)!r} (the torch hub cache), set "
        f"${metrics.ALEXNET_ENV}=/path/to/{metrics.ALEXNET_FILENAME}, or pass `lpips_backbone_path / --lpips-backbone`."
    )
    start = f"LPIPS (AlexNet backbone) needs the weight file '{metrics.ALEXNET_FILENAME}', which was not found at"
    for path, looked_in, where in [
        (None, "the torch hub cache", no_weight_files / metrics.ALEXNET_FILENAME),
        (tmp_path / "mine.pth", "`lpips_backbone_path / --lpips-backbone`", tmp_path / "mine.pth"),
        (tmp_path, "`lpips_backbone_path / --lpips-backbone`", tmp_path / metrics.ALEXNET_FILENAME),
    ]:
        message = f"{start} {str(where)!r} (looked in {looked_in}). {advice}"
        with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
            metrics.resolve_weights_file(path, **spec)
    monkeypatch.setenv(metrics.ALEXNET_ENV, str(tmp_path / "env.pth"))
    message = f"{start} {str(tmp_path / 'env.pth')!r} (looked in ${metrics.ALEXNET_ENV}). {advice}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        metrics.resolve_weights_file(None, **spec)


def test_check_weight_files_finds_both_by_default_and_lists_every_missing_one(
    alexnet_weights, inception_weights, no_weight_files, tmp_path
):
    found = metrics.check_weight_files(lpips_backbone_path=alexnet_weights, inception_weights_path=inception_weights)
    assert found == {"lpips": Path(alexnet_weights), "fid": Path(inception_weights)}
    with pytest.raises(FileNotFoundError) as one:
        metrics.check_weight_files(compute_lpips=False, inception_weights_path=tmp_path / "none.pth")
    assert str(one.value).startswith("FID (torchvision Inception-v3) needs the weight file")
    with pytest.raises(FileNotFoundError) as both:
        metrics.check_weight_files(lpips_backbone_path=tmp_path / "a.pth", inception_weights_path=tmp_path / "b.pth")
    message = str(both.value)
    assert message.startswith("2 weight files are missing:\n- LPIPS (AlexNet backbone) needs the weight file")
    assert "\n- FID (torchvision Inception-v3) needs the weight file" in message


def test_weight_files_are_unpickled_as_tensors_only(tmp_path, capsys):
    import pickle

    torch.save({"weight": RunsCode()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError):
        metrics.load_inception(tmp_path / "evil.pth")
    assert "unpickling ran code" not in capsys.readouterr().out


def test_lpips_loads_quietly_onto_the_device_and_names_a_wrong_file(alexnet_weights, tmp_path, capsys):
    model = metrics.load_lpips(alexnet_weights, device="meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert capsys.readouterr() == ("", "")  # lpips' "Setting up [LPIPS] ..." lines stay off
    torch.save(torch.zeros(1), tmp_path / "tensor.pth")
    message = f"LPIPS backbone: {str(tmp_path / 'tensor.pth')!r} is not a state dict (got Tensor)."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.load_lpips(tmp_path / "tensor.pth")
    torch.save({"classifier.1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    message = (
        f"{str(tmp_path / 'other.pth')!r} is not a torchvision AlexNet state dict: key 'features.0.weight' is missing "
        f"(expected the file from {metrics.ALEXNET_URL})."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        metrics.load_lpips(tmp_path / "other.pth")


def test_fid_backbones_load_frozen_and_name_a_file_that_is_not_a_state_dict(
    inception_weights, pytorch_fid_weights, tmp_path
):
    torchvision_model = metrics.load_inception(inception_weights, device="meta")
    pytorch_fid_model = metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=64, device="meta")
    assert pytorch_fid_model.feature_dim == 64
    for model in (torchvision_model, pytorch_fid_model):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert {p.device.type for p in model.parameters()} == {"meta"}  # on the requested device
    not_a_dict = tmp_path / "weights.pth"
    torch.save(torch.zeros(1), not_a_dict)
    with pytest.raises(ValueError, match=rf"^Inception-v3: {re.escape(repr(str(not_a_dict)))} is not a state dict"):
        metrics.load_inception(not_a_dict)
    with pytest.raises(ValueError, match=r"^pytorch-fid Inception: '.*weights\.pth' is not a state dict \(got Tensor"):
        metrics.load_pytorch_fid_inception(not_a_dict)
    with pytest.raises(ValueError, match=r"^`fid_dims` must be one of \(64, 192, 768, 2048\) with pytorch-fid"):
        metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=100)
    wrong_keys = tmp_path / "other.pth"
    torch.save({"x": torch.zeros(1)}, wrong_keys)
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(wrong_keys)))} is not a torchvision Inception-v3"):
        metrics.load_inception(wrong_keys)
    with pytest.raises(ValueError, match=rf"^{re.escape(repr(str(wrong_keys)))} is not pytorch-fid's TF-Inception"):
        metrics.load_pytorch_fid_inception(wrong_keys)


def test_load_fid_backbone_loads_the_given_file_of_the_given_backbone(
    inception_weights, pytorch_fid_weights, no_weight_files
):
    assert isinstance(metrics.load_fid_backbone("torchvision", inception_weights), metrics.InceptionFeatureExtractor)
    pytorch_fid = metrics.load_fid_backbone("pytorch-fid", pytorch_fid_weights, dims=192)
    assert isinstance(pytorch_fid, metrics.PytorchFIDFeatureExtractor) and pytorch_fid.feature_dim == 192
    with pytest.raises(ValueError, match=r"^`fid_dims` must be 2048 with the torchvision backbone, got 64\.$"):
        metrics.load_fid_backbone("torchvision", inception_weights, dims=64)


def test_load_fid_backbone_passes_the_file_size_and_device_on(monkeypatch):
    monkeypatch.setattr(weights, "load_inception", lambda path, device: ("torchvision", path, device))
    monkeypatch.setattr(
        weights, "load_pytorch_fid_inception", lambda path, dims, device: ("pytorch-fid", path, dims, device)
    )
    assert metrics.load_fid_backbone("torchvision", "a.pth", device="meta") == ("torchvision", "a.pth", "meta")
    assert metrics.load_fid_backbone("pytorch-fid", "b.pth", dims=192, device="meta") == (
        "pytorch-fid",
        "b.pth",
        192,
        "meta",
    )


def test_pytorch_fid_backbone_without_the_package_says_how_to_install_it(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pytorch_fid" else find_spec(name, *a)
    )
    message = (
        "`fid_backbone='pytorch-fid'` needs the pytorch-fid package: `pip install pytorch-fid` (or "
        "`pip install truepose[eval]`)."
    )
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        metrics.check_fid_backbone("pytorch-fid", 2048)


def test_fid_backbone_arguments_are_checked(pytorch_fid_weights, inception_weights):
    with pytest.raises(ValueError, match="fid_backbone"):
        metrics.check_fid_backbone("clean-fid")
    with pytest.raises(ValueError, match="fid_dims"):
        metrics.check_fid_backbone("torchvision", 64)
    with pytest.raises(ValueError, match="fid_dims"):
        metrics.check_fid_backbone("pytorch-fid", 100)
    # Each backbone refuses the other's weight file.
    with pytest.raises(ValueError, match="not pytorch-fid's TF-Inception"):
        metrics.load_pytorch_fid_inception(inception_weights)
    with pytest.raises(ValueError, match="not a torchvision Inception-v3"):
        metrics.load_inception(pytorch_fid_weights)


def test_inception_features_follow_torchvision(inception_weights, image_pairs):
    from torchvision.models import inception_v3

    extractor = metrics.load_inception(inception_weights)
    images = np.stack([r for r, _ in image_pairs[:2]])
    features = extractor(torch.from_numpy(images))
    assert features.shape == (2, 2048) and torch.isfinite(features).all() and features.std() > 0

    reference = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    reference.load_state_dict(torch.load(inception_weights, weights_only=True))
    reference.fc = torch.nn.Identity()
    reference.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", antialias=True)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        expected = reference((x - mean) / std)
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-5)


def test_inception_extractor_resizes_with_antialiasing_and_accepts_float64(inception_weights):
    """Downsampling (a 320 x 400 image to 299 x 299) is where antialiasing matters; the normalisation buffers are
    not part of the state dict (the checkpoint is torchvision's, unchanged)."""
    extractor = metrics.load_inception(inception_weights)
    assert not any(key in extractor.state_dict() for key in ("mean", "std"))
    assert set(extractor.state_dict()) == {f"inception.{k}" for k in extractor.inception.state_dict()}
    image = torch.rand(1, 3, 320, 400, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(image, size=(299, 299), mode="bilinear", antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = extractor.inception((resized - mean) / std)
        features = extractor(image)
        torch.testing.assert_close(features, expected)
        torch.testing.assert_close(extractor(image.double()), features)


def test_pytorch_fid_features_equal_pytorch_fid(pytorch_fid_weights, image_pairs, tmp_path, monkeypatch):
    from pytorch_fid.fid_score import get_activations

    images = np.stack([real for real, _ in image_pairs[:4]])
    files = save_images(tmp_path / "images", images)
    reference = pytorch_fid_reference_model(pytorch_fid_weights, 2048, tmp_path, monkeypatch)
    expected = get_activations(files, reference, batch_size=2, dims=2048, device="cpu", num_workers=0)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))  # ours reads the explicit path only
    extractor = metrics.load_fid_backbone("pytorch-fid", pytorch_fid_weights)
    assert extractor.feature_dim == 2048
    features = extractor(torch.from_numpy(images)).double().numpy()
    assert features.shape == (4, 2048) and features.std() > 0
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_pytorch_fid_extractor_accepts_float64(pytorch_fid_weights):
    extractor = metrics.load_pytorch_fid_inception(pytorch_fid_weights, dims=64)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(extractor(image.double()), extractor(image))
