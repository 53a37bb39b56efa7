"""The 12-layer tiny OpenAI-layout CLIP of the baseline specs (spec_lamp_baselines.md §9): the model the
official-code checks ran on, so each method's snapshot of its outputs is reproduced from the same seed."""
import open_clip
import torch

from bench.model.backbone import ClipBackbone


def tiny12(seed: int = 0, perturb_norms: bool = False, image_size: int = 32) -> ClipBackbone:
    """fp32, QuickGELU, embed 64, 12 layers per tower.  ``perturb_norms``: random LayerNorm weights, as
    random init leaves every LayerNorm the identity map (ln_1 and ln_2 would then agree).
    ``image_size``: 48 gives 9 patches (16-pixel), for methods that pick the top-5 patches (TextRefiner)."""
    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=64, quick_gelu=True,
        vision_cfg=dict(image_size=image_size, patch_size=16, width=64, head_width=64, layers=12),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=12)).eval()
    if perturb_norms:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.add_(0.2 * torch.randn_like(module.weight))
                    module.bias.add_(0.1 * torch.randn_like(module.bias))
    return ClipBackbone(model, open_clip.get_tokenizer("ViT-B-16"))
