import pytest
import torch

from bench.backbone import OpenClip, OpenClipConfig
from bench.errors import BenchError
from bench.synthetic_clip import SyntheticClip, SyntheticClipConfig, weights_path


def test_encode_prompts_matches_open_clip(backbone):
    tokens = backbone.tokenize(["a photo of a tiger.", "a zebra."])
    ours = backbone.encode_prompts(backbone.embed_tokens(tokens), tokens)
    theirs = backbone.model.encode_text(tokens, normalize=True)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.allclose(backbone.encode_text(tokens), theirs, atol=1e-6)


def test_prompt_embeddings_receive_gradients(backbone):
    tokens = backbone.tokenize(["X X a tiger."])
    emb = backbone.embed_tokens(tokens).detach().requires_grad_(True)
    backbone.encode_prompts(emb, tokens).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in backbone.parameters())


def test_backbone_stays_in_eval_mode(backbone):
    backbone.train()
    assert not backbone.training and not backbone.model.training


def test_random_open_clip_model_builds_offline():
    bb = OpenClip.build(OpenClipConfig(model="bench-tiny-vit", pretrained=None))
    assert bb.width == 64 and bb.context_length == 32
    feats = bb.encode_image(torch.randn(2, 3, 32, 32))
    assert feats.shape == (2, 32)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_unknown_model_suggests():
    with pytest.raises(BenchError, match="unknown open_clip model 'ViT-B-61'; did you mean"):
        OpenClip.build(OpenClipConfig(model="ViT-B-61"))


def test_missing_weights_are_a_clear_error(tmp_path):
    missing = tmp_path / "weights.pt"
    with pytest.raises(BenchError, match="could not load open_clip 'bench-tiny-vit'"):
        OpenClip.build(OpenClipConfig(model="bench-tiny-vit", pretrained=str(missing)))


def test_synthetic_clip_pretraining_is_cached(tmp_path):
    cfg = SyntheticClipConfig(steps=3, cache_dir=str(tmp_path))
    path = weights_path(cfg)
    assert not path.exists()
    first = SyntheticClip.build(cfg)
    assert path.exists()
    second = SyntheticClip.build(cfg)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    assert weights_path(SyntheticClipConfig(steps=4, cache_dir=str(tmp_path))) != path


def test_synthetic_clip_zero_shot_beats_chance(backbone, smoke_data):
    """Pretraining in code makes zero-shot work: the smoke leaderboard means something."""
    from bench.data import TransformedDataset

    test = TransformedDataset(smoke_data.test, backbone.preprocess_val)
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    text = backbone.encode_text(backbone.tokenize([f"a photo of a {c}." for c in smoke_data.classnames]))
    with torch.no_grad():
        acc = ((backbone.encode_image(images) @ text.T).argmax(1) == labels).float().mean().item()
    assert acc > 0.4  # chance is 0.1
