"""Checks shared by the training tests."""

import torch


def assert_same_training(result, reference, initial, learning_rate):
    """Same weights up to fp32 rounding. AdamW divides by sqrt(v): on entries whose gradient is near zero it turns
    rounding into visible steps, so the check is: average difference tiny against the average update, and no entry
    off by more than a quarter of one step (a different noise draw or batch split is off by about 100%; in CI the
    largest rounding step seen was 0.12 of one step). ``result``, ``reference`` and ``initial`` are state dicts."""
    assert result.keys() == reference.keys()
    update = torch.cat([(reference[key] - initial[key]).flatten() for key in reference])
    difference = torch.cat([(result[key] - reference[key]).flatten() for key in reference])
    assert update.abs().mean() > 0.5 * learning_rate  # the run trained
    assert difference.abs().mean() < 1e-4 * update.abs().mean()
    assert difference.abs().max() < 0.25 * learning_rate
