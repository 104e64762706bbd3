"""Answer normalisation of the official VQA evaluation: punctuation, digits, articles, apostrophes.

Why: VQAv2 accuracy compares strings after this exact normalisation; "Two." and "2" are
the same answer, "e-mail" and "email" are not. Matched: lmms-eval 0.7.3
``EvalAIAnswerProcessor.process_punctuation`` + ``process_digit_article``
(``lmms_eval/tasks/_task_utils/vqa_eval_metric.py``), which follows the official
``vqaEval.py`` of GT-Vision-Lab/VQA. Steps:

1. newlines and tabs become spaces; strip.
2. punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``: each is deleted if the
   *input* has it next to a space, or has a digit-comma-digit anywhere; otherwise each
   becomes a space. Apostrophes and colons are kept.
3. a period not followed by a digit is deleted (``"2."`` -> ``"2"``, ``"3.5"`` kept).
4. lower-case, split on whitespace; number words ``none zero one … ten`` become digits
   (``none`` -> ``0``); articles ``a an the`` are dropped; apostrophe-less contractions
   are restored (``dont`` -> ``don't``); words re-joined with one space.

Example:
    >>> normalize_answer("Two dogs, the cat.")
    '2 dogs cat'
"""

from __future__ import annotations

import re

_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                ">", "<", "@", "`", ",", "?", "!"]
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d),+(?=\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its "(?!<=\d)" is a look-ahead for the
# text "<=digit", which never follows a period, so only "(?!\d)" has an effect.
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3",
                 "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
                 "nine": "9", "ten": "10"}
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions the official table restores. Each spelling that lacks exactly one of the
# apostrophes of a form below maps to that form ("couldnt" and "couldn'tve" -> "couldn't've"
# needs "couldnt've" too: one apostrophe missing at a time, never two).
_CONTRACTED_FORMS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've
hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am
might've mightn't mightn't've must've mustn't needn't not've o'clock oughtn't 'ow's'at
shan't she'd've should've shouldn't shouldn't've somebody'd've somebody'll somebody's
someone'd someone'd've someone'll someone's something'd something'd've something'll
that's there'd there'd've there're there's they'd they'd've they'll they're they've 'twas
wasn't we'd've we've weren't what'll what're what's what've when's where'd where's
where've who'd who'd've who'll who's who've why'll why're why's won't would've wouldn't
wouldn't've y'all y'all'd've y'all'll you'd you'd've you'll you're you've
""".split()


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for form in _CONTRACTED_FORMS:
        for i, ch in enumerate(form):
            if ch == "'":
                table[form[:i] + form[i + 1:]] = form
    # The official table maps this one the other way round; kept for identical scores.
    table["somebody'd"] = "somebodyd"
    return table


_CONTRACTIONS = _contraction_table()


def process_punctuation(text: str) -> str:
    """Step 2 and 3 above (on text already stripped of newlines and tabs)."""
    delete = bool(_DIGIT_COMMA_DIGIT.search(text))
    out = text
    for p in _PUNCTUATION:
        if delete or (p + " ") in text or (" " + p) in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def process_digit_article(text: str) -> str:
    """Step 4 above: number words to digits, drop articles, restore contractions."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in _ARTICLES]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(text: str) -> str:
    """The full official VQA normalisation of one answer (steps 1-4).

    Example:
        >>> normalize_answer("Dont know")
        "don't know"
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
