"""Listing and review text vocabularies, and the regular expressions built from them.

Counterfeit listings advertise themselves with trade slang ("replica", "1:1", "AAA+",
"mirror quality") in titles and in the text printed on product images (OCR text supplied
upstream), and name famous brands they do not carry ("brand stuffing"). The patterns here
are plain regular expressions that RE2 (DuckDB) and Java (Spark) read the same way; text is
lower-cased before matching.
"""

from __future__ import annotations

from collections.abc import Iterable

# Trade slang for fakes, as seen on counterfeit listings.
REPLICA_TERMS: tuple[str, ...] = (
    "replica",
    "1:1",
    "aaa+",
    "aaa",
    "mirror quality",
    "high copy",
    "super copy",
    "top grade",
    "copy",
    "oem",
    "factory original",
    "unbranded",
    "inspired",
    "dupe",
)

# Harmless phrases that contain a replica term; they are blanked out before matching so that
# "desk copy holder" is not taken for a copy. ("original packaging", "factory sealed" and
# "authentic" need no entry: they contain no replica term.)
HARMLESS_PHRASES: tuple[str, ...] = (
    "copy holder",
    "carbon copy",
    "hard copy",
)

# Words buyers use in reviews when they received a fake.
FAKE_REVIEW_TERMS: tuple[str, ...] = (
    "fake",
    "counterfeit",
    "not original",
    "not genuine",
    "not authentic",
    "knockoff",
    "knock off",
    "knock-off",
    "replica",
)

# Characters with a meaning in regular expressions (the same set for RE2 and Java).
_REGEX_SPECIAL = set("\\.^$|?*+()[]{}")


def escape_regex(text: str) -> str:
    """Escape regex metacharacters (only those, so that RE2 and Java read it alike)."""
    return "".join(f"\\{ch}" if ch in _REGEX_SPECIAL else ch for ch in text)


def _bounded(term: str) -> str:
    # A word boundary only next to word characters: "\baaa\+\b" would miss "aaa+ bag".
    start = r"\b" if term[0].isalnum() else ""
    end = r"\b" if term[-1].isalnum() else ""
    return f"{start}{escape_regex(term)}{end}"


def terms_pattern(terms: Iterable[str]) -> str:
    r"""Regex matching any of ``terms`` as whole words, in one capturing group.

    Longer terms come first so that the longest alternative wins ("aaa+" before "aaa").

    Args:
        terms: Lower-case terms; empty or blank ones are ignored.

    Returns:
        A pattern like ``(\bhigh copy\b|\bcopy\b)``.

    Raises:
        ValueError: If no term is left.
    """
    unique = sorted(
        {t.strip().lower() for t in terms if t and t.strip()}, key=lambda t: (-len(t), t)
    )
    if not unique:
        raise ValueError("terms_pattern needs at least one non-blank term")
    return "(" + "|".join(_bounded(t) for t in unique) + ")"


def prefilter_terms(terms: Iterable[str]) -> list[str]:
    """The shortest substrings whose presence a match of ``terms`` requires.

    A text containing none of them cannot match ``terms_pattern(terms)``, so a cheap
    substring test can skip the regular expression for most rows. Terms that contain another
    term are dropped ("high copy" needs "copy"); regex metacharacters are not special here.
    """
    unique = sorted(
        {t.strip().lower() for t in terms if t and t.strip()}, key=lambda t: (len(t), t)
    )
    kept: list[str] = []
    for term in unique:
        if not any(shorter in term for shorter in kept):
            kept.append(term)
    return kept


def replica_pattern() -> str:
    """Regex for the replica terms."""
    return terms_pattern(REPLICA_TERMS)


def harmless_pattern() -> str:
    """Regex for the harmless look-alike phrases blanked out before matching."""
    return terms_pattern(HARMLESS_PHRASES)


def fake_review_pattern() -> str:
    """Regex for the fake-goods words in review text."""
    return terms_pattern(FAKE_REVIEW_TERMS)
