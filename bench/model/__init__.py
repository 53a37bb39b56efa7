"""The model side: the frozen CLIP backbone (and the synthetic one for tests), deep prompts in
both towers, class prompts, the method contract, losses, clustering, image transforms.
Imports bench.core, bench.config and bench.data."""
