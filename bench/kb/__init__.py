"""MDPR's knowledge bases: the five knowledge prompts, LLM and offline backends with cached
replies, the KB file format, and confusion partners from zero-shot CLIP.
Imports bench.core only."""
