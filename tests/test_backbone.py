import math

import open_clip
import pytest
import torch

from bench.core.errors import BenchError, ConfigError
from bench.model.backbone import OpenClip, OpenClipConfig, needs_quick_gelu, planned_setup
from bench.model.synthetic_clip import SyntheticClip, SyntheticClipConfig, weights_path


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


@pytest.mark.slow  # pretrains the backbone
def test_synthetic_clip_pretraining_is_cached(tmp_path, monkeypatch):
    import bench.model.synthetic_clip

    cfg = SyntheticClipConfig(steps=3, cache_dir=str(tmp_path))
    path = weights_path(cfg)
    assert not path.exists()
    first = SyntheticClip.build(cfg)
    assert path.exists()
    # The second build must read the file: pretraining is not allowed, and the weights are the file's.
    marked = {k: v.clone() for k, v in first.model.state_dict().items()}
    marked["logit_scale"] = torch.tensor(1.2345)
    torch.save(marked, path)
    monkeypatch.setattr(bench.model.synthetic_clip, "pretrain", lambda *a, **k: pytest.fail("pretrained again"))
    second = SyntheticClip.build(cfg)
    assert second.model.logit_scale.item() == pytest.approx(1.2345)
    assert weights_path(SyntheticClipConfig(steps=4, cache_dir=str(tmp_path))) != path


def nan_weights(blob):
    import io

    state = torch.load(io.BytesIO(blob))
    state["logit_scale"] = torch.tensor(float("nan"))
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


@pytest.mark.slow  # pretrains the backbone again
@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"not a torch file",
                                    nan_weights])
def test_damaged_backbone_cache_is_set_aside_and_rebuilt(tmp_path, capsys, damage):
    cfg = SyntheticClipConfig(steps=2, cache_dir=str(tmp_path))
    good = SyntheticClip.build(cfg).model.state_dict()
    path = weights_path(cfg)
    path.write_bytes(damage(path.read_bytes()))
    rebuilt = SyntheticClip.build(cfg).model.state_dict()
    assert all(torch.equal(good[k], rebuilt[k]) for k in good)  # pretraining is deterministic
    assert path.exists() and path.with_name(path.name + ".corrupt").exists()
    assert "cannot be used" in capsys.readouterr().err


def test_synthetic_clip_zero_shot_beats_chance(backbone, smoke_data, smoke_transforms):
    """Pretraining in code makes zero-shot work: the smoke leaderboard means something."""
    from bench.data import TransformedDataset

    test = TransformedDataset(smoke_data.test, smoke_transforms[1])
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    text = backbone.encode_text(backbone.tokenize([f"a photo of a {c}." for c in smoke_data.classnames]))
    with torch.no_grad():
        acc = ((backbone.encode_image(images) @ text.T).argmax(1) == labels).float().mean().item()
    assert acc > 0.4  # chance is 0.1


def _no_download(monkeypatch):
    """Build real architectures for pretrained tags without fetching their weights."""
    import open_clip.factory

    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda cfg, cache_dir=None: "weights.pt")
    monkeypatch.setattr(open_clip.factory, "load_checkpoint", lambda *args, **kwargs: None)


def test_openai_weights_get_quick_gelu(monkeypatch):
    """OpenAI trained CLIP with x * sigmoid(1.702 x); open_clip's ViT-B-16 config says GELU."""
    _no_download(monkeypatch)
    bb = OpenClip.build(OpenClipConfig(model="ViT-B-16", pretrained="openai"))
    assert bb.activation == "quick_gelu" and bb.image_size == 224
    act = bb.model.transformer.resblocks[0].mlp.gelu
    x = torch.tensor([1.0, -2.0])
    expected = torch.tensor([1.0 / (1 + math.exp(-1.702)), -2.0 / (1 + math.exp(3.404))])  # 0.8458, -0.0645
    assert torch.allclose(act(x), expected, atol=1e-6)
    assert not torch.allclose(act(x), torch.nn.functional.gelu(x), atol=1e-3)


def test_weights_trained_with_gelu_keep_gelu(monkeypatch):
    _no_download(monkeypatch)
    bb = OpenClip.build(OpenClipConfig(model="ViT-B-16", pretrained="laion2b_s34b_b88k"))
    assert bb.activation == "gelu"


def test_every_openai_tag_needs_quick_gelu():
    tags = [(m, t) for m, t in open_clip.list_pretrained() if t == "openai"]
    assert len(tags) >= 18  # RN50 ... ViT-L-14-336, and each as "-quickgelu"
    assert all(planned_setup(m, t)["activation"] == "quick_gelu" for m, t in tags)
    assert all(needs_quick_gelu(m, t) for m, t in tags if not m.endswith("-quickgelu"))
    assert not needs_quick_gelu("ViT-B-16", None) and not needs_quick_gelu("ViT-B-16-quickgelu", "openai")
    assert planned_setup("ViT-B-16", "openai") == {"image_size": 224, "activation": "quick_gelu"}
    assert planned_setup("ViT-B-16-quickgelu", "openai")["activation"] == "quick_gelu"
    assert planned_setup("ViT-B-16", "laion2b_s34b_b88k")["activation"] == "gelu"


@pytest.mark.filterwarnings("ignore:QuickGELU mismatch")
def test_activation_that_disagrees_with_the_tag_is_refused(monkeypatch):
    import open_clip.factory

    _no_download(monkeypatch)
    real = open_clip.factory.create_model
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **kw: real(*a, **{**kw, "force_quick_gelu": False}))
    with pytest.raises(BenchError, match="with gelu, but .openai. needs quick_gelu"):
        OpenClip.build(OpenClipConfig(model="ViT-B-16", pretrained="openai"))


def test_checkpoint_file_says_its_activation(tmp_path):
    from bench.core.coerce import from_dict

    weights = tmp_path / "tiny.pt"
    torch.save(OpenClip.build(OpenClipConfig(model="bench-tiny-vit", pretrained=None)).model.state_dict(), weights)
    with pytest.raises(ConfigError, match="quick_gelu: required with a checkpoint file"):
        from_dict(OpenClipConfig, {"model": "bench-tiny-vit", "pretrained": str(weights)}, "protocol.backbone")
    for quick, activation in ((True, "quick_gelu"), (False, "gelu")):
        cfg = from_dict(OpenClipConfig, {"model": "bench-tiny-vit", "pretrained": str(weights), "quick_gelu": quick},
                        "protocol.backbone")
        assert OpenClip.build(cfg).activation == activation == OpenClip.planned_setup(cfg)["activation"]


@pytest.mark.parametrize("options, where, message", [
    ({"model": "ViT-B-61"}, "model", "unknown open_clip model 'ViT-B-61'; did you mean"),
    ({"pretrained": "opena"}, "pretrained", "neither a pretrained tag of ViT-B-16; did you mean 'openai'"),
    ({"pretrained": "openai", "quick_gelu": False}, "quick_gelu", "trained with QuickGELU; leave quick_gelu unset"),
    ({"pretrained": "laion2b_s34b_b88k", "quick_gelu": True}, "quick_gelu", "trained with GELU"),
])
def test_backbone_settings_are_checked_when_the_protocol_loads(options, where, message):
    from bench.core.coerce import from_dict

    with pytest.raises(ConfigError, match=message) as err:
        from_dict(OpenClipConfig, options, "protocol.backbone")
    assert err.value.where == f"protocol.backbone.{where}"


def test_unwritable_cache_is_a_warning(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    bb = SyntheticClip.build(SyntheticClipConfig(steps=2, cache_dir=str(afile / "below")))
    assert bb.width == 64 and "cannot cache backbone weights" in capsys.readouterr().err


@pytest.mark.slow  # pretrains a backbone
def test_diverged_pretraining_is_an_error(tmp_path):
    with pytest.raises(BenchError, match="backbone pretraining diverged"):
        SyntheticClip.build(SyntheticClipConfig(steps=3, lr=1e3, cache_dir=str(tmp_path)))
    assert not list(tmp_path.glob("*.pt"))  # nothing cached
