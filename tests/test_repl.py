"""The REPL: its state machine (entries, commands, completion) and the prompt_toolkit loop
driven through a pipe, as a terminal would drive it."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("sgl.syntax.parse")
pytest.importorskip("sgl.compiler")

from prompt_toolkit.history import InMemoryHistory  # noqa: E402
from prompt_toolkit.input import create_pipe_input  # noqa: E402
from prompt_toolkit.output import DummyOutput  # noqa: E402

from sgl.compiler import check_source  # noqa: E402
from sgl.repl import is_complete, loop, make_prompt  # noqa: E402
from sgl.repl_editing import completions, tokens  # noqa: E402
from sgl.repl_session import Session, parse_run_args, split_statements  # noqa: E402
from sgl.resources import stdlib_dir  # noqa: E402
from sgl.syntax.parse import parse  # noqa: E402

PROMPT = 'prompt "a red circle and a blue square"'


@pytest.fixture
def session(tmp_path):
    return Session(base_dir=tmp_path, out_dir=tmp_path / "out", opener=lambda paths: None)


def started(session: Session) -> Session:
    for entry in (PROMPT, "use edits"):
        reply = session.handle(entry)
        assert reply.ok, reply.text
    return session


# ---------------------------------------------------------------------- entries


def test_an_error_is_shown_then_the_corrected_entry_is_kept(session):
    started(session)
    bad = session.handle("move(circel, (0.2, 0))")
    assert not bad.ok
    assert "E031" in bad.text and "`circel`" in bad.text
    assert "<repl:3>:1:6" in bad.text          # points into what was typed, as typed
    assert "circel" not in session.text        # rejected entries are not kept
    good = session.handle("move(circle, (0.2, 0))")
    assert good.ok, good.text
    assert session.text.endswith("move(circle, (0.2, 0))")
    assert len(session.chunks) == 3


def test_an_error_in_a_later_line_of_an_entry_gets_that_line(session):
    started(session)
    reply = session.handle("fn f(o: Object) {\n  size(o) = size_0(dgo)\n}")
    assert not reply.ok
    assert "<repl:3>:2:" in reply.text


def test_a_syntax_error_is_an_error_not_a_crash(session):
    reply = session.handle("centroid(dog) = = 3")
    assert not reply.ok
    assert re.search(r"E00\d", reply.text), reply.text
    assert session.chunks == []


def test_entries_may_come_before_the_prompt_but_check_wants_it(session):
    assert session.handle("use edits").ok
    assert session.handle("seed 3").ok
    reply = session.handle(":check")
    assert not reply.ok and "E023" in reply.text
    assert session.handle(PROMPT).ok
    assert session.handle(":check").ok


def test_undo_drops_the_last_entry_and_reset_can_be_undone(session):
    started(session)
    session.handle("keep(circle)")
    assert "keep(circle)" in session.text
    assert session.handle(":undo").ok
    assert "keep(circle)" not in session.text and len(session.chunks) == 2
    assert session.handle(":reset").ok
    assert session.text == ""
    assert session.handle(":undo").ok
    assert len(session.chunks) == 2
    assert session.handle(":u").ok and session.handle(":u").ok
    assert not session.handle(":undo").ok    # nothing left to undo


def test_a_setting_typed_again_replaces_the_earlier_one(session):
    started(session)
    assert session.handle("seed 7").ok
    reply = session.handle("seed 8")
    assert reply.ok and "seed 7" in reply.text
    assert "seed 8" in session.text and "seed 7" not in session.text
    session.handle(":undo")
    assert "seed 7" in session.text and "seed 8" not in session.text


def test_unknown_and_ambiguous_commands(session):
    assert "unknown command" in session.handle(":frobnicate").text
    assert "ambiguous" in session.handle(":s").text       # :save and :show
    assert ":undo" in session.handle(":help").text
    assert session.handle(":quit").quit


def test_an_internal_error_does_not_end_the_session(session, monkeypatch):
    started(session)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("sgl.compiler.check_source", broken)
    reply = session.handle("keep(circle)")
    assert not reply.ok and "internal error" in reply.text and "boom" in reply.text
    monkeypatch.undo()
    assert session.handle("keep(circle)").ok


# ---------------------------------------------------------------------- commands


def test_type_of_expressions_in_the_program_scope(session):
    started(session)
    session.handle("let d = (0.1, 0.2)")
    assert session.handle(":type centroid(circle)").text.strip().endswith("Vec2")
    assert session.handle(":type size(square) * 2").text.strip().endswith("Scalar")
    assert session.handle(":type d + centroid_0(circle)").text.strip().endswith("Vec2")
    assert session.handle(":type others(circle)").text.strip().endswith("List[Object]")
    bad = session.handle(":type size(circle) + (1, 2)")
    assert not bad.ok and "Scalar" in bad.text and "Vec2" in bad.text
    assert "<type>" in bad.text
    assert len(session.chunks) == 3             # :type adds nothing to the program


def test_save_writes_a_formatted_program_that_checks(session, tmp_path):
    from sgl.syntax.fmt import format_program

    started(session)
    session.handle("seed    7")
    session.handle("fn nudge(o: Object) {\n      centroid(o) = centroid_0(o) + (0.1,0)\n}")
    session.handle("nudge(circle)  weight 2")
    reply = session.handle(":save saved/edit.sgl")
    assert reply.ok, reply.text
    path = tmp_path / "saved" / "edit.sgl"
    saved = path.read_text()
    check_source(saved, file=str(path), base_dir=path.parent)     # re-checks as a file
    assert parse(saved) == parse(session.text)                    # same program
    assert format_program(parse(saved)) == saved                  # already formatted


def test_load_starts_from_a_program_one_entry_per_statement(session, tmp_path):
    path = tmp_path / "p.sgl"
    path.write_text(f"# a test\n{PROMPT}\nseed 3; steps 4\nuse edits\n\nkeep(circle)  # stays\n")
    reply = session.handle(f":load {path}")
    assert reply.ok, reply.text
    assert len(session.chunks) == 5
    assert parse(session.text) == parse(path.read_text())
    session.handle(":undo")
    assert session.chunks == []


def test_load_of_a_bad_file_keeps_the_session(session, tmp_path):
    started(session)
    path = tmp_path / "bad.sgl"
    path.write_text(f"{PROMPT}\nkeep(circel)\n")
    reply = session.handle(f":load {path}")
    assert not reply.ok and "circel" in reply.text
    assert len(session.chunks) == 2


def test_split_statements_keeps_the_program():
    text = f"{PROMPT}\nuse edits\nfn f(o: Object) {{\n  keep(o)\n}}\nf(circle)\n"
    pieces = split_statements(text, "x.sgl")
    assert len(pieces) == 4
    assert parse("\n".join(pieces)) == parse(text)


def test_ir_prints_the_terms(session):
    started(session)
    session.handle("centroid(circle) = centroid_0(circle) + (0.25, 0)")
    reply = session.handle(":ir")
    assert reply.ok, reply.text
    assert "l1" in reply.text


def test_run_arguments():
    assert parse_run_args("--steps 3 --seed=4") == {"steps": 3, "seed": 4}
    assert parse_run_args("--recurrence 2 --strength 1.5") == {"recurrence": 2, "strength": 1.5}
    assert parse_run_args("--recurrence-until 0.5") == {"recurrence_until": 0.5}
    assert parse_run_args("--recurrence-above 0.05") == {"recurrence_above": 0.05}
    assert parse_run_args("--recurrence-early 0.3") == {"recurrence_early": 0.3}
    with pytest.raises(ValueError, match="--stepz"):
        parse_run_args("--stepz 3")
    with pytest.raises(ValueError, match="integer"):
        parse_run_args("--steps x")


def test_show_before_any_run(session):
    assert not session.handle(":show").ok


# ---------------------------------------------------------------------- editing


def _stdlib_fn_names(module: str) -> set[str]:
    text = (stdlib_dir() / f"{module}.sgl").read_text()
    return set(re.findall(r"^\s*(?:extern\s+)?fn\s+(\w+)", text, re.M))


def test_completion_offers_prompt_words_and_stdlib_names(session):
    started(session)
    word, found = completions(session, "keep(squ")
    assert word == "squ" and "square" in found
    word, found = completions(session, "centroid(circle) = ")
    core = _stdlib_fn_names("core")
    prelude = _stdlib_fn_names("prelude")
    edits = _stdlib_fn_names("edits")
    assert core and prelude and edits
    assert (core | prelude | edits) <= set(found)
    assert {"circle", "square", "red", "blue"} <= set(found)


def test_completion_offers_user_definitions_and_sources(session):
    started(session)
    session.handle('image ref = generate "a green circle"')
    session.handle("fn wiggle(o: Object) { keep(o) }")
    assert "wiggle" in completions(session, "wig")[1]
    assert set(completions(session, "appearance[")[1]) == {"orig", "ref"}
    assert "green" in completions(session, "keep(gre")[1]     # a caption's word
    assert "edits" in completions(session, "use ")[1]
    assert completions(session, ":un")[1] == ["undo"]
    assert "Vec2" in completions(session, "fn f(a: Ve")[1]
    # names defined earlier in the same unfinished entry count too
    assert "mine" in completions(session, "let mine = 2\nmi")[1]
    # an Image parameter of the function being written names a source inside it
    assert set(completions(session, "fn f(o: Object, src: Image) {\n  size(o) = size[")[1]) == {"orig", "ref", "src"}


def test_completion_inside_type_command(session):
    started(session)
    assert "square" in completions(session, ":type size(sq")[1]


def test_tokens_classify_sgl_words():
    kinds = dict((text, kind) for kind, text in tokens('use edits  # x\nsize_0(dog) weight 2 from 10% "s"'))
    assert kinds["use"] == "keyword" and kinds["weight"] == "keyword"
    assert kinds["size_0"] == "source"
    assert kinds["10%"] == "number" and kinds['"s"'] == "string"
    assert kinds["# x"] == "comment"
    assert dict((t, k) for k, t in tokens("seed 7"))["seed"] == "setting"


def test_is_complete_waits_for_closing_brackets_but_not_on_errors():
    assert not is_complete("fn f(o: Object) {")
    assert not is_complete("keep(dog,")
    assert is_complete("keep(dog)")
    assert is_complete(":type (")
    assert is_complete("keep(dog)) = = ")     # an error: shown at once, not waited on


# ---------------------------------------------------------------------- the terminal loop


def _drive(session: Session, keys: str) -> list[str]:
    said: list[str] = []
    with create_pipe_input() as pipe:
        pipe.send_text(keys)
        prompt = make_prompt(session, input=pipe, output=DummyOutput(), history=InMemoryHistory())
        status = loop(session, prompt, write=said.append, banner=False)
    assert status == 0
    return said


def test_pipe_multi_line_entry_then_ctrl_d(session):
    keys = (PROMPT + "\r" + "use edits\r"
            + "fn nudge(o: Object) {\r" + "centroid(o) = centroid_0(o) + (0.1, 0)\r" + "}\r"
            + "nudge(circle)\r" + "\x04")
    _drive(session, keys)
    assert len(session.chunks) == 4
    assert session.chunks[2].text.count("\n") == 2          # one entry over three lines
    assert session.chunks[2].text.splitlines()[1:] == [       # indented inside `{ }`
        "  centroid(o) = centroid_0(o) + (0.1, 0)", "}"]
    assert parse(session.text).statements[-1].call.func == "nudge"


def test_pipe_error_then_recovery_and_quit(session):
    keys = PROMPT + "\r" + "keep(circel)\r" + "use edits\r" + "keep(circle)\r" + ":quit\r" + "more\r"
    said = _drive(session, keys)
    assert any("E031" in s or "circel" in s for s in said)
    assert session.text.splitlines()[-1] == "keep(circle)"
    assert "more" not in session.text


def test_pipe_enter_on_an_empty_line_submits_an_unfinished_entry(session):
    said = _drive(session, PROMPT + "\r" + "keep(circle,\r\r" + "\x04")
    assert said and not said[-1].startswith("ok")
    assert len(session.chunks) == 1                 # the broken entry was shown, not kept


def test_warnings_of_an_accepted_entry_are_shown_once(session):
    started(session)
    reply = session.handle("centroid(circle) = (1.5, 0)")
    assert reply.ok and "W001" in reply.text and "<repl:3>" in reply.text
    later = session.handle("keep(square)")
    assert later.ok and "W001" not in later.text      # not repeated for the next entry


def test_program_lists_the_lines_ir_refers_to(session):
    started(session)
    assert session.handle(":program").text.splitlines() == [f"1 | {PROMPT}", "2 | use edits"]


def test_run_cancelled_by_ctrl_c_keeps_the_program(session, monkeypatch):
    pytest.importorskip("sgl.runtime.execute")
    session.pipe = object()      # never used: the run is interrupted first
    started(session)
    session.handle("keep(circle)")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("sgl.program.Program.run", interrupted)
    reply = session.handle(":run --steps 2")
    assert not reply.ok and "cancelled" in reply.text
    assert len(session.chunks) == 3 and session.latest == []


def test_run_flag_out_of_range_is_a_diagnostic_not_a_crash(session):
    started(session)
    reply = session.handle(":run --warmup 2")
    assert not reply.ok and "E024" in reply.text and "warmup" in reply.text and "Traceback" not in reply.text


def test_sgl_repl_file_starts_from_the_program(tmp_path, monkeypatch):
    from sgl.repl import main

    path = tmp_path / "start.sgl"
    path.write_text(f"{PROMPT}\nuse edits\nkeep(circle)\n")
    monkeypatch.setenv("SGL_HISTORY", str(tmp_path / "history"))
    with create_pipe_input() as pipe:
        pipe.send_text(":save again.sgl\r\x04")
        assert main(str(path), input=pipe, output=DummyOutput()) == 0
    saved = (tmp_path / "again.sgl").read_text()
    assert parse(saved) == parse(path.read_text())
    assert ":save again.sgl" in (tmp_path / "history").read_text()     # history persists


def test_cli_repl_rejects_a_missing_file(tmp_path, capsys):
    from sgl.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["repl", str(tmp_path / "nope.sgl")])
    assert exit_.value.code == 2
    assert "nope.sgl" in capsys.readouterr().err


def test_second_run_reuses_the_model_and_the_cached_original(tmp_path, tiny_sd_dir, monkeypatch):
    pytest.importorskip("sgl.runtime.execute")
    import sgl.runtime.pipelines as pipelines

    loads = []
    real_load = pipelines.load_pipeline
    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    session = Session(base_dir=tmp_path, out_dir=tmp_path / "out", model=str(tiny_sd_dir),
                      progress=False, opener=lambda paths: None)
    started(session)
    assert session.handle("resolution 32").ok          # the tiny model's own size: fast
    assert session.handle("centroid(circle) = centroid_0(circle) + (0.1, 0)").ok
    first = session.handle(":run --steps 2")
    assert first.ok, first.text
    cache = session.cache
    misses = cache.misses
    assert misses >= 1                                  # the original was sampled once
    assert (tmp_path / "out" / "run-001" / "edited.png").is_file()
    assert str(tmp_path / "out" / "run-001" / "original.png") in first.text

    session.handle(":undo")
    assert session.handle("size(square) = 1.5 * size_0(square)").ok    # another constraint
    second = session.handle(":run --steps 2")
    assert second.ok, second.text
    assert session.cache is cache
    assert cache.misses == misses and cache.hits >= 1    # ... and not sampled again
    assert "cache" in second.text
    assert len(loads) == 1                               # nor the model loaded again
    shown = session.handle(":show")
    assert shown.ok and str(tmp_path / "out" / "run-002" / "edited.png") in shown.text


def test_the_completer_replaces_the_word_being_typed(session):
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from sgl.repl import SGLCompleter

    started(session)
    found = list(SGLCompleter(session).get_completions(Document("keep(squ"), CompleteEvent(completion_requested=True)))
    assert [(c.text, c.start_position) for c in found] == [("square", -3)]
    document = Document("keep(squ")
    assert document.text[: len(document.text) + found[0].start_position] + found[0].text == "keep(square"


def test_the_lexer_colours_keywords_and_strings():
    from prompt_toolkit.document import Document

    from sgl.repl import SGLLexer

    line = SGLLexer().lex_document(Document('use edits # note\nprompt "a dog"'))
    assert ("class:keyword", "use") in line(0) and ("class:comment", "# note") in line(0)
    assert ("class:setting", "prompt") in line(1) and ("class:string", '"a dog"') in line(1)
    assert "".join(text for _, text in line(1)) == 'prompt "a dog"'


def test_files_named_by_the_program_are_relative_to_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "m.png").write_bytes(b"")     # exists: that is all the checker looks at
    (folder / "p.sgl").write_text(f'{PROMPT}\nshape(circle) = mask("m.png")\n')
    monkeypatch.chdir(tmp_path)              # the user's shell is elsewhere
    session = Session(opener=lambda paths: None)
    assert session.handle(":load project/p.sgl").ok
    assert session.handle('shape(square) = mask("m.png")').ok
    missing = session.handle('shape(square) = mask("nope.png")')
    assert not missing.ok and "E039" in missing.text


def test_a_runtime_error_points_into_the_entry_it_is_about(session, monkeypatch):
    from sgl.diagnostics import SGLError, Span

    pytest.importorskip("sgl.runtime.execute")
    session.pipe = object()
    started(session)
    session.handle('image ref = generate "a green circle"')
    text = session.text
    where = text.index("ref")

    def failing(*args, **kwargs):
        raise SGLError.single("E299", "cannot sample `ref`", Span.at_offsets("<repl>", text, where, where + 3))

    monkeypatch.setattr("sgl.program.Program.run", failing)
    reply = session.handle(":run")
    assert not reply.ok and "E299" in reply.text and "<repl:3>:1:7" in reply.text


def test_negative_run_flag_is_the_settings_range_diagnostic(session):
    started(session)
    reply = session.handle(":run --seed -1")
    assert not reply.ok and "E024" in reply.text and "`seed` must be 0 or more" in reply.text
