"""Property tests: whatever text comes in, the compiler half answers with SGLError only.

Programs are generated from the grammar itself (hypothesis.extra.lark) and by mutating the
examples (characters and tokens deleted, inserted, swapped). Every outcome must be a success
or an SGLError whose diagnostics are not internal errors (E999) and whose spans lie inside
the text they point into.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgl.diagnostics import SGLError, Span

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(ROOT.glob("examples/*.sgl"))
TOKENS = ["(", ")", "[", "]", "{", "}", ",", ";", "\n", "=", "==", "<", ">=", "≤", "+", "-", "*", "/",
          ".", ".x", "%", "#", '"', "₀", "_0", "0", "1.5", "1e9", "512x768", "dog", "circle", "fn",
          "let", "for", "in", "use", "object", "image", "generate", "load", "caption", "weight",
          "from", "to", "using", "l2", "margin", "minimize", "extern", "->", "size", "keep",
          "others(", "[orig]", "prompt", "seed", " ", "\t", "\x00", "é"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def compile_text(text: str, file: str) -> None:
    """Run the full compiler half; fail on anything that is not a well-formed SGLError."""
    from sgl.compiler import check_source

    try:
        check_source(text, file)
    except SGLError as error:
        assert error.diagnostics, "an SGLError without diagnostics"
        sources = {file: text, **error.sources}
        for diag in error.diagnostics:
            assert diag.code != "E999", diag.message + "\n" + "\n".join(diag.notes)
            if diag.span is not None and diag.span.file in sources:
                assert_inside(diag.span, sources[diag.span.file])
            for label in diag.labels:
                if label.span.file in sources:
                    assert_inside(label.span, sources[label.span.file])
        error.render()  # rendering never fails either


def assert_inside(span: Span, text: str) -> None:
    assert 0 <= span.start <= span.end <= len(text), (span, len(text))
    again = Span.at_offsets(span.file, text, span.start, span.end)
    assert (span.line, span.column, span.end_line, span.end_column) == (
        again.line, again.column, again.end_line, again.end_column), (span, again)


@st.composite
def mutated_example(draw):
    path = draw(st.sampled_from(EXAMPLES))
    text = path.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "replace"]))
        if action == "delete":
            text = text[:where] + text[where + draw(st.integers(1, 8)):]
        elif action == "insert":
            text = text[:where] + draw(st.sampled_from(TOKENS)) + text[where:]
        else:
            text = text[:where] + draw(st.sampled_from(TOKENS)) + text[where + 1:]
    return str(path), text


@FUZZ
@given(mutated_example())
def test_mutated_examples_give_only_diagnostics(case):
    file, text = case
    compile_text(text, file)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup_gives_only_diagnostics(text):
    compile_text(text, "soup.sgl")


def _grammar_strategy():
    """Programs drawn from grammar/sgl.lark, with words separated so that they lex as drawn."""
    from hypothesis.extra.lark import from_lark

    from sgl.syntax.grammar import build

    parser = build(cache=False)
    explicit = {
        "NAME": st.sampled_from(["dog ", "cat ", "circle ", "size ", "centroid ", "keep ", "x ", "o ",
                                 "shape₀ ", "prompt ", "seed ", "attn "]),
        "STRING": st.sampled_from(['"a dog and a cat" ', '"x.png" ', '"a red circle" ', '"a \\"q\\"" ']),
        "NUMBER": st.sampled_from(["0 ", "1 ", "0.5 ", "30 ", "1e-3 "]),
        "RESOLUTION": st.just("512x768 "),
        "_NL": st.sampled_from(["\n", ";", "\n\n  "]),
        "DISTANCE": st.sampled_from(["l1 ", "l2 "]),
    }
    for terminal in parser.terminals:
        value = terminal.pattern.value
        if terminal.pattern.type == "str" and value.isalpha() and terminal.name not in explicit:
            explicit[terminal.name] = st.just(value + " ")
    return from_lark(parser, start="start", explicit=explicit)


GRAMMAR_PROGRAMS = _grammar_strategy()


@settings(FUZZ, max_examples=15)  # drawing from the grammar is the slow part
@given(GRAMMAR_PROGRAMS)
def test_programs_generated_from_the_grammar_give_only_diagnostics(text):
    compile_text(text, "generated.sgl")


def test_generated_programs_do_parse():
    """The generator is useful only if its programs get past the parser."""
    from hypothesis import find

    from sgl.syntax.parse import parse

    def parses(text: str) -> bool:
        try:
            parse(text)
        except SGLError:
            return False
        return "(" in text and "\n" in text

    assert find(GRAMMAR_PROGRAMS, parses, settings=settings(max_examples=300, deadline=None))
