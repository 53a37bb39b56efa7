"""Our transforms against the Dassl/CoOp pipeline and open_clip's eval transform, on fixed images."""
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from bench.config.protocol import load_protocol
from bench.config.transforms import TransformConfig
from bench.core.errors import ConfigError
from bench.model.transforms import build_transforms

# Dassl.pytorch defaults.py / CoOp configs: INPUT.SIZE (224, 224), INTERPOLATION "bicubic",
# RRCROP_SCALE (0.08, 1.0), PIXEL_MEAN/STD CLIP's, TRANSFORMS ["random_resized_crop", "random_flip", "normalize"].
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = T.InterpolationMode.BICUBIC


def dassl_train(size):
    # dassl/data/transforms/transforms.py build_transform(is_train=True): RRC, flip, ToTensor, Normalize
    return T.Compose([T.RandomResizedCrop(size, scale=(0.08, 1.0), interpolation=BICUBIC),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def dassl_test(size):
    # build_transform(is_train=False): Resize(max(size)) of the shorter side, CenterCrop, ToTensor, Normalize
    return T.Compose([T.Resize(size, interpolation=BICUBIC), T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 256, (53, 37, 3), dtype=np.uint8))
    wide = Image.fromarray(rng.randint(0, 256, (20, 40, 3), dtype=np.uint8))
    return [rgb, wide, rgb.convert("L"), rgb.convert("RGBA")]


def test_default_train_transform_is_dassls(images):
    ours, _ = build_transforms(TransformConfig(), image_size=224)
    for image in images:
        for seed in range(5):  # crops and flips differ per seed; the pipelines must agree on each
            torch.manual_seed(seed)
            a = ours(image)
            torch.manual_seed(seed)
            b = dassl_train(224)(image.convert("RGB"))
            assert a.shape == (3, 224, 224) and torch.equal(a, b)


def test_default_test_transform_is_dassls_and_open_clips(images):
    _, ours = build_transforms(TransformConfig(), image_size=224)
    cfg = open_clip.pretrained.get_pretrained_cfg("ViT-B-16", "openai")
    theirs = open_clip.image_transform(224, is_train=False, mean=cfg["mean"], std=cfg["std"],
                                       interpolation=cfg["interpolation"], resize_mode=cfg["resize_mode"])
    for image in images:
        a = ours(image)
        assert torch.equal(a, dassl_test(224)(image.convert("RGB")))
        assert torch.allclose(a, theirs(image), atol=1e-6)


def test_mdpr_cifar_geometry(images):
    """Sha843/MDPR main_maple.py: Resize(224, bicubic), RandomCrop(224, padding=4), flip (CLIP stats, by REC)."""
    ours, _ = build_transforms(TransformConfig(train_crop="resize_pad_crop"), image_size=224)
    mdpr = T.Compose([T.Resize(224, interpolation=BICUBIC), T.RandomCrop(224, padding=4), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(MEAN, STD)])
    for seed in range(3):
        torch.manual_seed(seed)
        a = ours(images[0])
        torch.manual_seed(seed)
        assert torch.equal(a, mdpr(images[0]))


def test_test_transform_keeps_the_aspect_ratio_and_crops_the_centre():
    # A 40x20 image: shorter side 20 -> 224 gives 448x224; the crop keeps columns 112..335.
    left = np.zeros((20, 20, 3), np.uint8)
    image = Image.fromarray(np.concatenate([left, left + 255], axis=1))  # black left half, white right half
    _, test = build_transforms(TransformConfig(mean=[0, 0, 0], std=[1, 1, 1]), image_size=224)
    out = test(image)
    assert out[:, :, :100].max() < 0.05 and out[:, :, 124:].min() > 0.95  # the edge sits at column 112


def test_size_defaults_to_the_backbone_and_options_apply(images):
    train, test = build_transforms(TransformConfig(), image_size=32)
    assert train(images[0]).shape == test(images[0]).shape == (3, 32, 32)
    no_flip, _ = build_transforms(TransformConfig(flip=False, crop_scale=[1.0, 1.0], crop_ratio=[0.7, 0.7]), 64)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in no_flip.transforms)
    _, resized = build_transforms(TransformConfig(size=32, test_resize=40), image_size=224)
    assert [type(t).__name__ for t in resized.transforms][1:3] == ["Resize", "CenterCrop"]
    assert resized.transforms[1].size == 40 and resized(images[0]).shape == (3, 32, 32)


@pytest.mark.parametrize("changes, where", [
    ({"crop_scale": [0.5]}, "crop_scale"),
    ({"crop_scale": [0.9, 0.5]}, "crop_scale"),
    ({"crop_scale": [0.5, 1.5]}, "crop_scale"),
    ({"crop_ratio": [0, 1]}, "crop_ratio"),
    ({"mean": [0.5, 0.5]}, "mean"),
    ({"std": [0.2, 0.0, 0.2]}, "std"),
    ({"size": 0}, "size"),
    ({"crop_padding": -1}, "crop_padding"),
    ({"train_crop": "random"}, "train_crop"),
    ({"interpolation": "lanczos"}, "interpolation"),
])
def test_bad_transform_settings_name_the_field(changes, where):
    from bench.core.coerce import from_dict

    with pytest.raises(ConfigError) as err:
        from_dict(TransformConfig, changes, "protocol.transforms")
    assert err.value.where == f"protocol.transforms.{where}"


@pytest.mark.parametrize("name", ["cifar100_lt_ir10", "cifar100_lt_ir50", "cifar100_lt_ir100",
                                  "cifar100_lt_ir10_liftgroups", "cifar100_lt_ir50_liftgroups"])
def test_cifar_protocols_train_with_mdprs_geometry(name, images):
    """The lt family is MDPR's protocol: its CIFAR pipeline, with CLIP's statistics (spec §7.9)."""
    train, test = build_transforms(load_protocol(name).transforms, image_size=224)
    mdpr_train = T.Compose([T.Resize(224, interpolation=BICUBIC), T.RandomCrop(224, padding=4),
                            T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    mdpr_test = T.Compose([T.Resize(224, interpolation=BICUBIC), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    cifar_like = images[0].resize((32, 32))
    torch.manual_seed(0)
    a = train(cifar_like)
    torch.manual_seed(0)
    assert torch.equal(a, mdpr_train(cifar_like))
    assert torch.equal(test(cifar_like), mdpr_test(cifar_like))


def test_configured_normalisation_is_open_clips():
    """bench.config writes CLIP's mean and std out (configuration never imports torch): they must
    stay open_clip's own constants."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from bench.config.transforms import CLIP_MEAN, CLIP_STD

    assert CLIP_MEAN == list(OPENAI_DATASET_MEAN) and CLIP_STD == list(OPENAI_DATASET_STD)
    assert TransformConfig().mean == CLIP_MEAN and TransformConfig().std == CLIP_STD
