"""Raw text to tokens with character offsets, Penn-Treebank-like (``tokenize``)."""

from __future__ import annotations

import re
import unicodedata


def _combining_marks() -> str:
    # Python's \w has no combining marks (Mn/Mc/Me), so "é" written as e + U+0301, or most Indic
    # and Thai words, would fall apart; these ranges go into the word characters instead.
    ranges: list[tuple[int, int]] = []
    for code in [*range(0x20000), *range(0xE0100, 0xE01F0)]:
        if unicodedata.category(chr(code)).startswith("M"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


_W = rf"[\w{_combining_marks()}\u200c\u200d]"  # word character: letter, digit, _, mark, ZWNJ, ZWJ
_TITLES = (
    "Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Mt|Gen|Col|Lt|Sgt|Capt|Gov|Sen|Rep|Rev|Inc|Corp|Ltd|Co|Bros|vs|etc"
    "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_TOKEN = re.compile(
    "|".join(
        [
            r"(?:https?://|www\.)\S*[^\s.,;:!?'\"’”)\]}>]",  # URL, trailing punctuation left off
            r"\w[\w.+-]{0,63}@[\w-]+(?:\.[\w-]+)+",  # e-mail address
            r"(?:[^\W\d_]\.){2,}",  # letter-period abbreviations: U.S. e.g. a.m.
            r"[A-Z]\.(?=\s+[A-Z])",  # an initial before a capitalised word: John F. Kennedy
            rf"(?<!\w)(?:{_TITLES})\.",  # titles, company suffixes, months: Dr. Inc. Aug.
            rf"(?P<word>{_W}+(?:(?:[-'’]|(?<=\d)[.,](?=\d)){_W}+)*)",  # word: internal - ' and digit . ,
            r"(?<=\S)['’](?i:[sdm]|re|ve|ll)(?!\w)",  # clitic after a non-word token: U.S.'s
            r"\.\.\.|-{2,}",  # ellipsis, dash
            r"\S",  # anything else is a token by itself
        ]
    )
)
_CLITIC = re.compile(r"(?<=\w)(?:n['’]t|['’](?:s|re|ve|ll|d|m))$", re.IGNORECASE)


def tokenize(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into tokens, Penn-Treebank-like, with each token's character span.

    Rules, tried in this order at each position:

    - whitespace separates tokens and is dropped; every other character ends up, unchanged,
      in exactly one token, so ``text[start:end] == token`` always holds;
    - URLs (``http://``, ``https://``, ``www.``) and e-mail addresses are one token; a URL's
      trailing punctuation is split off;
    - abbreviations keep their periods: letter-period runs (``U.S.``, ``e.g.``), an initial
      before a capitalised word (``F.`` in ``John F. Kennedy``) and a fixed list of titles,
      company suffixes and months (``Dr.``, ``Inc.``, ``Aug.``);
    - a word is a run of letters, digits, ``_`` and combining marks, joined across internal
      hyphens and apostrophes (``well-known``, ``O'Neill``, ``1996-12-06``) and across ``.``
      or ``,`` between digits (``1,000.50``);
    - clitics come off a word's end: ``n't`` (``don't`` -> ``do n't``, ``can't`` -> ``ca n't``)
      and ``'s 're 've 'll 'd 'm`` (``John's`` -> ``John 's``, ``U.S.'s`` -> ``U.S. 's``),
      with ' or ’;
    - ``...`` and runs of ``--`` are one token; any other character (punctuation, symbols,
      emoji) is a token by itself. Scripts without spaces (Chinese, Japanese) are not segmented.
    """
    tokens: list[str] = []
    offsets: list[tuple[int, int]] = []
    for m in _TOKEN.finditer(text):
        start, end = m.span()
        clitic = _CLITIC.search(m.group()) if m.lastgroup == "word" else None
        if clitic:
            cut = start + clitic.start()
            tokens += [text[start:cut], text[cut:end]]
            offsets += [(start, cut), (cut, end)]
        else:
            tokens.append(m.group())
            offsets.append((start, end))
    return tokens, offsets
