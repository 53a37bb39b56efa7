"""MDPR's LLM queries, sentence frames, output cleaning and the verification check (methods_spec §7.1-§7.4).

The query texts are the paper's App. B prompts (the same text is in ``Sha843/MDPR:bug/many_api.py`` at
31fcb5fc4427a86c7d5c2c0907ef157c4da55856, whose placeholder form of the DF prompt is used).  What CLIP
encodes is the full sentence: the cleaned phrase inserted into its dimension's frame::

    text = query("GA", "apple", None, 25)           # the prompt sent to the LLM
    phrase = clean(raw_llm_output)
    problem = check("GA", phrase, "apple", None, 25)  # None, or why the phrase is rejected
    frame_sentence("GA", "apple", None, phrase)      # "A apple typically appears as ..."
"""
from __future__ import annotations

import re
import unicodedata
from typing import Optional

DIMENSIONS = ("GA", "FT", "FA", "DF", "CI")  # the merged file's order (bug/z_merge.py)
VALIDATOR = "v1"  # bump when the check or its word lists change: it is part of the KB's identity

FRAMES = {
    "GA": "A {c} typically appears as {p}",
    "FT": "A {c} is used for {p}",
    "FA": "A distinctive feature of a {c} is {p}",
    "DF": "Unlike a {o}, a {c} has {p}",
    "CI": "A {c} is commonly found in {p}",
}

_SIMPLE = '''Provide a concise English phrase describing {subject}.
Focus on {focus}.
The phrase should be approximately {w} words and suitable to complete the sentence: "{frame} [YOUR PHRASE HERE]."
Output ONLY the descriptive phrase. Do NOT include "{frame}".

Descriptive phrase for "{c}":'''

_SIMPLE_PARTS = {
    "GA": ('the key visual appearance features of a "{c}"',
           "what it looks like (e.g., shape, color, texture, notable parts)"),
    "FT": ('the primary function or purpose of a "{c}"', "what it is used for"),
    "CI": ('the common environments or contexts where a "{c}" is typically found',
           "its usual surroundings or scenarios"),
}

_DF = '''Describe the key visual differences of a "{c}" when compared to a "{o}".
Focus on features that distinguish a "{c}" from a "{o}".
The description should be in English, concise, and approximately {w} words.
Output ONLY the descriptive phrase itself, suitable for completing the sentence: "Unlike a {o}, a {c} has [YOUR PHRASE HERE]."
Output ONLY the descriptive phrase of differences. Do NOT include "Unlike a {o}, a {c} has".

Descriptive phrase of differences for "{c}" compared to "{o}":'''

_FA = '''Provide a concise English phrase describing one or two highly distinctive or fine-grained visual attributes of a "{c}" that make it unique or easily identifiable.
Focus on specific, detailed characteristics.
The description should be in English, concise, and approximately {w} words.
Output ONLY the descriptive phrase itself, suitable for completing the sentence: "A distinctive feature of a {c} is [YOUR PHRASE HERE]."
Output ONLY the descriptive phrase of the attribute(s). Do NOT include "A distinctive feature of a {c} is".

Descriptive phrase of attribute(s) for "{c}":'''


def query(dimension: str, classname: str, partner: Optional[str], words: int) -> str:
    """The paper's prompt for one class and dimension (``partner``: the confusing class, DF only)."""
    if dimension == "DF":
        return _DF.format(c=classname, o=partner, w=words)
    if dimension == "FA":
        return _FA.format(c=classname, w=words)
    subject, focus = _SIMPLE_PARTS[dimension]
    frame = FRAMES[dimension].format(c=classname, p="").rstrip()
    return _SIMPLE.format(subject=subject.format(c=classname), focus=focus, c=classname, w=words, frame=frame)


# Terminal escape sequences: CSI (ESC [ ... final), strings (OSC, DCS, SOS, PM, APC) up to their
# terminator, other ESC sequences, and their one-byte C1 forms.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                      r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
                      r"|\x1b[ -/]*[0-~]")


def plain_text(text: str) -> str:
    """``text`` without terminal escape sequences, control characters (NUL, bell, C1), format characters
    (bidi overrides and isolates, zero-width marks, BOM) or lone surrogates; tab and line breaks stay,
    other control characters that are white space (form feed, NEL) become a space."""
    return "".join(_plain_char(c) for c in _ESCAPES.sub("", text))


def _plain_char(c: str) -> str:
    if c in "\t\n\r" or unicodedata.category(c) not in ("Cc", "Cf", "Cs"):
        return c
    return " " if c.isspace() else ""


def clean(text: str) -> str:
    """``clean_llm_output``: strip quotes and a leading 'Descriptive phrase ...:' line, collapse white
    space, drop one trailing period; first drop what a terminal or CLIP should never see (:func:`plain_text`)."""
    text = re.sub(r'^\s*Descriptive phrase[^:\n]*:\s*', "", plain_text(text).strip())
    text = " ".join(text.replace('"', " ").replace("“", " ").replace("”", " ").split())
    text = text.strip(" '")
    return text[:-1].rstrip() if text.endswith(".") else text


def frame_sentence(dimension: str, classname: str, partner: Optional[str], phrase: str) -> str:
    """The stored sentence: frame + phrase, first letter upper-case, one final period; ``;`` becomes
    ``,`` (z_merge.py joins a class's sentences with "; ")."""
    sentence = FRAMES[dimension].format(c=classname, o=partner, p=phrase).replace(";", ",").replace("；", ",")
    sentence = sentence[:1].upper() + sentence[1:]
    return sentence if sentence.endswith(".") else sentence + "."


# Keyword lists of the relevance check (part of VALIDATOR's version).
VISUAL_WORDS = frozenset(
    "colour color colored coloured red orange yellow green blue purple pink brown black white grey gray silver "
    "golden dark light bright pale shiny glossy matte striped spotted patterned shape shaped round oval square "
    "rectangular long short tall small large big thin thick curved straight pointed flat smooth rough fuzzy furry "
    "feathered scaly texture textured surface body head tail wings wing legs leg eyes beak fur feathers petals "
    "petal leaves leaf stem handle wheels wheel edge edges pattern stripes spots lines metal metallic wooden "
    "glass plastic transparent size slender compact sleek".split())
FUNCTION_WORDS = frozenset("used use using serves serving for to helps help allows provides".split())
CONTEXT_WORDS = frozenset(
    "in on at near around inside outside areas area places place environments environment settings setting "
    "homes home houses kitchens gardens parks forests fields roads streets cities water rivers oceans sea "
    "farms shops stores offices schools habitats habitat regions wild indoors outdoors rooms".split())
REFUSALS = ("i'm sorry", "i am sorry", "as an ai", "cannot", "i can't", "i can not", "sorry")


def _words(phrase: str):
    return re.findall(r"[a-z]+", phrase.lower())


def check(dimension: str, phrase: str, classname: str, partner: Optional[str], words: int,
          ga_phrase: Optional[str] = None) -> Optional[str]:
    """Why ``phrase`` fails the verification (methods_spec §7.4), or None if it passes."""
    if not phrase:
        return "empty"
    if "\n" in phrase or re.match(r"^\s*(?:[-*•]|\d+[.)])\s", phrase):
        return "a list, not a phrase"
    count = len(phrase.split())
    if not 0.4 * words <= count <= 2.5 * words:
        return f"{count} words, expected {0.4 * words:g} to {2.5 * words:g}"
    lower = phrase.lower()
    frame = FRAMES[dimension].format(c=classname, o=partner, p="").strip().lower()
    if lower.startswith(frame) or lower.startswith("unlike a"):
        return "repeats the sentence frame"
    if lower.startswith(REFUSALS):
        return "a refusal"
    tokens = set(_words(phrase))
    if dimension in ("GA", "FA") and not tokens & VISUAL_WORDS:
        return "no visual word"
    if dimension == "FT" and not (tokens & FUNCTION_WORDS or any(t.endswith("ing") for t in tokens)):
        return "no verb of use"
    if dimension == "CI" and not tokens & CONTEXT_WORDS:
        return "no place or context word"
    if dimension == "DF" and ga_phrase is not None and lower == ga_phrase.lower():
        return "the same as the GA phrase"
    return None
