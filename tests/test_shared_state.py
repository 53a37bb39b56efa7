"""The shared-fixture guard of conftest.py sees each way a test can change a shared model."""
import copy

import pytest
import torch

from shared_state import fingerprint


@pytest.fixture
def model(backbone):
    return copy.deepcopy(backbone)  # a private copy: the session's backbone must not change here


@pytest.mark.parametrize("change", [
    lambda m: setattr(m.text, "attn_mask", None),              # a buffer set to None
    lambda m: delattr(m.text, "attn_mask"),                     # a buffer deleted (pytest 9.2's undo)
    lambda m: m.text.ln_final.weight.data.add_(1),              # a weight changed in place
    lambda m: setattr(m.text.ln_final, "weight", torch.nn.Parameter(m.text.ln_final.weight.clone())),
    lambda m: m.text.ln_final.weight.requires_grad_(True),      # unfrozen
    lambda m: m.text.transformer.resblocks[0].register_forward_pre_hook(lambda *a: None),
    lambda m: nn_train(m.text),                                 # a submodule left in training mode
    lambda m: setattr(m.text, "extra", 1),                      # a plain attribute added
    lambda m: setattr(m, "tokenizer", None),
])
def test_every_kind_of_change_to_a_model_changes_its_fingerprint(model, change):
    before = fingerprint(model)
    assert fingerprint(model) == before  # stable when nothing changes
    change(model)
    assert fingerprint(model) != before


def nn_train(module):
    torch.nn.Module.train(module, True)


def test_a_change_that_is_undone_leaves_the_fingerprint_as_it_was(model):
    before = fingerprint(model)
    handle = model.text.transformer.resblocks[0].register_forward_pre_hook(lambda *a: None)
    handle.remove()
    mask = model.text.attn_mask
    model.text.attn_mask = None
    model.text.attn_mask = mask
    assert fingerprint(model) == before


def test_plain_objects_are_compared_by_their_fields(smoke):
    data = copy.deepcopy(smoke)
    before = fingerprint(data)
    data.seeds = [*data.seeds, 99]
    assert fingerprint(data) != before
