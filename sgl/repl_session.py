"""The REPL's state and commands, with no terminal in sight.

A `Session` holds the program typed so far as a list of chunks (one per accepted entry). A new
entry is checked together with the previous ones by the whole compiler half and is added only
if that produces no errors, so the session is always a valid program (up to its prompt, which
may come later). `sgl/repl.py` feeds it lines from prompt_toolkit; tests feed it strings.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import attrs

from sgl.diagnostics import Diagnostic, Label, SGLError, Span

REPL_FILE = "<repl>"       # name of the combined session text in diagnostics


@attrs.frozen
class Chunk:
    """One accepted entry: its text and the input number it was typed under (`<repl:N>`)."""

    text: str
    number: int

    @property
    def file(self) -> str:
        return f"<repl:{self.number}>"


@attrs.frozen
class Reply:
    """What the REPL prints after an entry; `ok` False for errors, `quit` ends the session."""

    text: str = ""
    ok: bool = True
    quit: bool = False


@attrs.frozen
class Command:
    name: str
    usage: str
    summary: str


COMMANDS = (
    Command("help", ":help", "this list"),
    Command("type", ":type EXPR", "the type of an expression in the current program"),
    Command("check", ":check", "check the whole program (the prompt must be set)"),
    Command("ir", ":ir", "print the energy IR of the program"),
    Command("run", ":run [--steps N] [--seed N] [--cfg X] [--strength X] [--recurrence N] [--recurrence-until X] "
                   "[--recurrence-above X] [--recurrence-early X] [--warmup X]",
            "sample the original and the edited image (the original is cached)"),
    Command("show", ":show", "print the latest images' paths and open them where a viewer exists"),
    Command("program", ":program", "print the program typed so far, with its line numbers"),
    Command("undo", ":undo", "undo the last change (drops the last entry)"),
    Command("reset", ":reset", "start from an empty program"),
    Command("save", ":save FILE", "write the session as a formatted .sgl program"),
    Command("load", ":load FILE", "replace the session by a program file"),
    Command("quit", ":quit", "leave (also Ctrl-D)"),
)
COMMAND_NAMES = tuple(c.name for c in COMMANDS)


class Session:
    """The program so far and what the commands act on.

    `overrides` are settings given on the command line (`--model`), applied at `:run` only,
    so that a saved program stays what the user typed.
    """

    def __init__(self, *, base_dir: Path | None = None, model: str | None = None,
                 device: str | None = None, out_dir: Path | None = None, color: bool = False,
                 pipe: Any = None, cache: Any = None, progress: bool = True,
                 opener: Callable[[list[Path]], str | None] | None = None) -> None:
        self.chunks: list[Chunk] = []
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.overrides = {"model": model} if model else {}
        self.device = device
        self.color = color
        self.pipe = pipe
        self.cache = cache
        self._loaded: dict[tuple, tuple] = {}  # (model, device) → (pipeline, its RunCache)
        self._spare_cache = cache              # a cache given here goes to the first model loaded
        self.progress = progress
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.latest: list[Path] = []          # files of the latest :run
        self.runs = 0
        self._inputs = 0                       # entries numbered so far (`<repl:N>`)
        self._undo: list[tuple[list[Chunk], str]] = []   # previous states and what changed
        self._opener = opener if opener is not None else open_with_viewer

    # ------------------------------------------------------------------ the program text

    @property
    def text(self) -> str:
        return "\n".join(c.text for c in self.chunks)

    def next_number(self) -> int:
        return self._inputs + 1

    def handle(self, entry: str) -> Reply:
        """Run one entry (SGL text or a `:command`). Never raises, except KeyboardInterrupt
        outside `:run` (the caller's prompt handles it)."""
        stripped = entry.strip()
        if not stripped:
            return Reply()
        try:
            if stripped.startswith(":"):
                return self.command(stripped)
            return self.add(entry)
        except SGLError as err:   # spans of the session's text are shown in its entries
            diags, sources = remap(err.diagnostics, self.chunks, {**err.sources, REPL_FILE: self.text})
            return Reply(self.render(diags, sources), ok=False)
        except Exception:  # an SGL bug must not end the user's session
            return Reply(internal_error(), ok=False)

    def add(self, text: str) -> Reply:
        """Check `text` after the program so far; keep it only if there are no errors."""
        self._inputs += 1
        chunk = Chunk(_trim(text), self._inputs)
        chunks = _replace_settings(self.chunks, chunk)
        replaced = [c for c in self.chunks if c not in chunks]
        candidate = [*chunks, chunk]
        diags, sources = self._diagnose(candidate)
        errors = [d for d in diags if d.is_error]
        if errors:
            return Reply(self.render(diags, sources), ok=False)
        self._push("the last entry")
        self.chunks = candidate
        own = [d for d in diags if d.span is not None and d.span.file == chunk.file]
        lines = [f"replaced `{c.text}`" for c in replaced]
        if own:
            lines.append(self.render(own, sources))
        return Reply("\n".join(lines))

    # ------------------------------------------------------------------ commands

    def command(self, line: str) -> Reply:
        name, _, rest = line[1:].partition(" ")
        rest = rest.strip()
        matches = [c for c in COMMAND_NAMES if c.startswith(name)] if name else []
        if name in COMMAND_NAMES:
            matches = [name]
        if len(matches) != 1:
            known = ", ".join(f":{c}" for c in COMMAND_NAMES)
            what = "ambiguous" if matches else "unknown"
            return Reply(f"{what} command `:{name}`; commands are {known}", ok=False)
        return getattr(self, f"cmd_{matches[0]}")(rest)

    def cmd_help(self, _: str) -> Reply:
        width = max(len(c.usage) for c in COMMANDS)
        lines = ["Type SGL statements; an entry continues over several lines until it is complete",
                 "(press Enter on an empty line to submit anyway). An entry with errors is not kept.", ""]
        lines += [f"  {c.usage.ljust(width)}  {c.summary}" for c in COMMANDS]
        lines += ["", "Commands may be shortened (`:u` for :undo). Tab completes names, prompt words",
                  "and sources; Ctrl-C cancels the entry or a running :run; Ctrl-D quits."]
        return Reply("\n".join(lines))

    def cmd_quit(self, _: str) -> Reply:
        return Reply(quit=True)

    def cmd_program(self, _: str) -> Reply:
        """The program with the line numbers that `:ir` and `:run` traces refer to."""
        if not self.chunks:
            return Reply("(the program is empty)")
        lines = self.text.split("\n")
        width = len(str(len(lines)))
        return Reply("\n".join(f"{n:>{width}} | {line}".rstrip() for n, line in enumerate(lines, 1)))

    def cmd_undo(self, _: str) -> Reply:
        if not self._undo:
            return Reply("nothing to undo", ok=False)
        self.chunks, what = self._undo.pop()
        return Reply(f"undid {what}")

    def cmd_reset(self, _: str) -> Reply:
        if not self.chunks:
            return Reply("the program is already empty")
        self._push(":reset")
        self.chunks = []
        return Reply("the program is empty (:undo brings it back)")

    def cmd_check(self, _: str) -> Reply:
        diags, sources = self._diagnose(self.chunks, full=True)
        if any(d.is_error for d in diags):
            return Reply(self.render(diags, sources), ok=False)
        head = f"ok: {len(self.chunks)} entries, no errors"
        return Reply(head + ("\n" + self.render(diags, sources) if diags else ""))

    def cmd_ir(self, _: str) -> Reply:
        from sgl.ir.printer import format_ir

        return Reply(format_ir(self._compile()))

    def cmd_type(self, rest: str) -> Reply:
        if not rest:
            return Reply("usage: :type EXPR", ok=False)
        from sgl.repl_types import type_of

        text, ok = type_of(self, rest)
        return Reply(text, ok=ok)

    def cmd_run(self, rest: str) -> Reply:
        try:
            overrides = parse_run_args(rest)
        except ValueError as exc:
            return Reply(f"{exc}\nusage: {COMMANDS[COMMAND_NAMES.index('run')].usage}", ok=False)
        energy = self._compile()
        from sgl.program import DEFAULTS, Program

        program = Program(energy=energy, settings={**DEFAULTS, **energy.settings}, text=self.text,
                          file=REPL_FILE, base_dir=self.base_dir)
        program = program.with_settings(**{**self.overrides, **overrides})
        try:
            from sgl.runtime.execute import execute  # noqa: F401  (is the runtime there?)
        except ImportError as exc:
            return Reply(f"cannot run: the SGL runtime is not available ({exc})", ok=False)
        started = time.perf_counter()
        try:
            pipe, cache = self._pipeline(program.settings["model"])
            misses = getattr(cache, "misses", None)
            result = program.run(pipe, device=self.device, progress=self.progress, cache=cache)
        except KeyboardInterrupt:
            return Reply("cancelled; the program is unchanged", ok=False)
        self.runs += 1
        folder = self._output_dir() / f"run-{self.runs:03d}"
        result.save(folder)
        self.latest = _images_in(folder)
        seconds = time.perf_counter() - started
        lines = [f"ran {program.settings['steps']} steps in {seconds:.1f}s -> {folder}"]
        lines += [f"  {p}" for p in self.latest]
        if misses is not None and getattr(cache, "misses", None) == misses:
            lines.append("(the original and reference runs came from the cache)")
        return Reply("\n".join(lines))

    def cmd_show(self, _: str) -> Reply:
        if not self.latest:
            return Reply("no images yet; `:run` makes some", ok=False)
        lines = [str(p) for p in self.latest]
        try:
            viewer = self._opener(self.latest)
        except Exception:  # a broken viewer must not matter
            viewer = None
        if viewer:
            lines.append(f"opened with {viewer}")
        return Reply("\n".join(lines))

    def cmd_save(self, rest: str) -> Reply:
        if not rest:
            return Reply("usage: :save FILE", ok=False)
        path = Path(os.path.expanduser(_unquote(rest)))
        if not path.is_absolute():
            path = self.base_dir / path
        text = self.formatted()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            return Reply(f"cannot write `{path}`: {exc.strerror or exc}", ok=False)
        from sgl.compiler import check_file

        try:  # what `sgl run` will read: the file, at its own place
            check_file(path)
        except SGLError as err:
            return Reply(f"saved {path}, but as a file it does not check:\n"
                         + self.render(err.diagnostics, {**err.sources, str(path): text}), ok=False)
        note = ""
        if self.overrides:
            flags = " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in self.overrides.items())
            note = f"\n(this session runs with {flags}; pass the same to `sgl run`)"
        return Reply(f"saved {path}{note}")

    def cmd_load(self, rest: str) -> Reply:
        if not rest:
            return Reply("usage: :load FILE", ok=False)
        path = Path(os.path.expanduser(_unquote(rest)))
        if not path.is_absolute():
            path = self.base_dir / path
        return self.load(path)

    def load(self, path: Path) -> Reply:
        """Replace the session by the program in `path` (one entry per statement)."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            return Reply(f"cannot read `{path}`: {exc.strerror or exc}", ok=False)
        from sgl.compiler import check_source

        try:
            check_source(text, file=str(path), base_dir=path.parent)
        except SGLError as err:
            return Reply(self.render(err.diagnostics, {**err.sources, str(path): text}), ok=False)
        self._push(f":load {path.name}")
        self.base_dir = path.parent
        self.chunks = []
        for piece in split_statements(text, str(path)):
            self._inputs += 1
            self.chunks.append(Chunk(piece, self._inputs))
        return Reply(f"loaded {path} ({len(self.chunks)} entries)")

    # ------------------------------------------------------------------ helpers

    def formatted(self) -> str:
        """The session as a formatted program (what `:save` writes)."""
        from sgl.syntax.fmt import format_program
        from sgl.syntax.parse import parse

        return format_program(parse(self.text, REPL_FILE))

    def _push(self, what: str) -> None:
        self._undo.append((list(self.chunks), what))

    def _compile(self):
        """The EnergyProgram of the session (raises SGLError with chunk-relative spans)."""
        from sgl.compiler import check_source

        text = self.text
        try:
            return check_source(text, file=REPL_FILE, base_dir=self.base_dir)
        except SGLError as err:
            diags, sources = remap(err.diagnostics, self.chunks, {**err.sources, REPL_FILE: text})
            raise SGLError(diags, sources) from None

    def _diagnose(self, chunks: list[Chunk], full: bool = False) -> tuple[list[Diagnostic], dict[str, str]]:
        """All diagnostics of the program made of `chunks`, with spans mapped into them.
        Unless `full`, a missing prompt is no error: it may be typed later."""
        from sgl.compiler import check_source

        text = "\n".join(c.text for c in chunks)
        prefix = "" if full else standin_for(text)
        try:
            energy = check_source(prefix + text, file=REPL_FILE, base_dir=self.base_dir)
            diags, sources = list(getattr(energy, "warnings", ()) or ()), {}
        except SGLError as err:
            diags, sources = list(err.diagnostics), dict(err.sources)
        if prefix:
            diags = [d for d in (_unshift(d, prefix, text) for d in diags) if d is not None]
        sources[REPL_FILE] = text
        return remap(diags, chunks, sources)

    def render(self, diags: list[Diagnostic], sources: dict[str, str]) -> str:
        from sgl.render import render_all

        return render_all(list(diags), sources, color=self.color)

    def _pipeline(self, model: str):
        """The pipeline to sample with and its run cache. A model named by a setting is
        loaded once and kept (one at a time), with a cache of its own: cached runs of one
        model never serve another."""
        from sgl.runtime.cache import RunCache

        if self.pipe is not None:
            if self.cache is None:
                self.cache = RunCache()
            return self.pipe, self.cache
        key = (str(model), self.device)
        if key not in self._loaded:
            from sgl.runtime.pipelines import load_pipeline

            self._loaded.clear()          # free the previous model first
            pipe, _ = load_pipeline(model, self.device)
            self._loaded[key] = (pipe, self._spare_cache or RunCache())
            self._spare_cache = None
        pipe, self.cache = self._loaded[key]
        return pipe, self.cache

    def _output_dir(self) -> Path:
        if self.out_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.out_dir = Path(tempfile.gettempdir()) / "sgl-repl" / f"{stamp}-{os.getpid()}"
        return self.out_dir


# ---------------------------------------------------------------------- spans and chunks

# Checked in front of a program that has no prompt yet, so that everything else is checked
# as it will be; it has no words, so no name resolves through it.
_PROMPT_STANDIN = 'prompt ""\n'


def standin_for(text: str) -> str:
    """What to check in front of `text`: the stand-in prompt if it has none, else nothing."""
    return "" if _has_prompt(text) else _PROMPT_STANDIN


def file_loader(base_dir: Path):
    """Reads `use "file.sgl"` imports of the session, relative to its base folder."""
    def load(path: str) -> str:
        return (Path(base_dir) / path).read_text(encoding="utf-8")

    return load


def _has_prompt(text: str) -> bool:
    from sgl.syntax import ast
    from sgl.syntax.parse import parse

    try:
        program = parse(text, REPL_FILE)
    except SGLError:
        return True   # let the real check report the syntax error
    return any(isinstance(s, ast.Setting) and s.name == "prompt" for s in program.statements)


def _unshift(diag: Diagnostic, prefix: str, text: str) -> Diagnostic | None:
    """A diagnostic of `prefix + text` moved onto `text`; None if it is about the stand-in."""
    if diag.span is None or diag.span.file != REPL_FILE:
        return diag
    if diag.span.start < len(prefix):
        return None

    def shift(span: Span) -> Span:
        if span.file != REPL_FILE:
            return span
        start = max(span.start - len(prefix), 0)
        end = max(span.end - len(prefix), start)
        return Span.at_offsets(REPL_FILE, text, start, end)

    return attrs.evolve(diag, span=shift(diag.span),
                        labels=tuple(attrs.evolve(lb, span=shift(lb.span)) for lb in diag.labels),
                        included_from=tuple(shift(s) for s in diag.included_from))


def remap(diags: list[Diagnostic], chunks: list[Chunk], sources: dict[str, str]):
    """Point spans of the combined `<repl>` text into the entries they fall in (`<repl:N>`),
    so that an error shows the line the user typed, numbered as they typed it."""
    starts = []
    offset = 0
    for chunk in chunks:
        starts.append(offset)
        offset += len(chunk.text) + 1

    def move(span: Span | None) -> Span | None:
        if span is None or span.file != REPL_FILE or not chunks:
            return span
        index = max(i for i, s in enumerate(starts) if s <= span.start or i == 0)
        chunk, base = chunks[index], starts[index]
        start = min(max(span.start - base, 0), len(chunk.text))
        end = min(max(span.end - base, start), len(chunk.text))
        return Span.at_offsets(chunk.file, chunk.text, start, end)

    out = [attrs.evolve(d, span=move(d.span),
                        labels=tuple(Label(move(lb.span), lb.message) for lb in d.labels),
                        included_from=tuple(move(s) for s in d.included_from))
           for d in diags]
    sources = {**sources, **{c.file: c.text for c in chunks}}
    return out, sources


def _replace_settings(chunks: list[Chunk], new: Chunk) -> list[Chunk]:
    """Without the earlier entries that only set what `new` sets again (`seed 8` after
    `seed 7` tries another seed instead of being a duplicate)."""
    names = _setting_names(new.text)
    if not names:
        return list(chunks)
    return [c for c in chunks if not (_setting_names(c.text) and _setting_names(c.text) <= names)]


def _setting_names(text: str) -> set[str] | None:
    """The settings `text` sets, if it consists of settings only; else None."""
    from sgl.syntax import ast
    from sgl.syntax.parse import parse

    try:
        program = parse(text, REPL_FILE)
    except SGLError:
        return None
    if not program.statements or not all(isinstance(s, ast.Setting) for s in program.statements):
        return None
    return {s.name for s in program.statements}


def split_statements(text: str, file: str) -> list[str]:
    """`text` cut into one piece per top-level statement (comments go with the statement
    after them), so that `:undo` after loading a file drops its last statement. Falls back
    to one piece when the cut would change the program."""
    from sgl.syntax.parse import parse

    program = parse(text, file)
    starts = [s.span.start for s in program.statements if s.span is not None]
    if len(starts) != len(program.statements) or not starts:
        return [_trim(text)] if text.strip() else []
    starts[0] = 0
    pieces = [_trim(text[a:b]) for a, b in zip(starts, [*starts[1:], len(text)])]
    pieces = [p.rstrip(";").rstrip() if p.rstrip().endswith(";") else p for p in pieces]
    pieces = [p for p in pieces if p.strip()]
    try:
        same = parse("\n".join(pieces), file) == program
    except SGLError:
        same = False
    return pieces if same else [_trim(text)]


def _trim(text: str) -> str:
    return text.strip("\n").rstrip()


def _unquote(arg: str) -> str:
    try:
        parts = shlex.split(arg)
    except ValueError:
        return arg
    return parts[0] if len(parts) == 1 else arg


def _images_in(folder: Path) -> list[Path]:
    order = {"original.png": 0, "edited.png": 1}
    found = [p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".html")]
    return sorted(found, key=lambda p: (order.get(p.name, 2), p.suffix == ".html", str(p)))


# ---------------------------------------------------------------------- :run arguments

_RUN_FLAGS = {"--steps": ("steps", int), "--seed": ("seed", int), "--cfg": ("cfg", float),
              "--strength": ("strength", float), "--recurrence": ("recurrence", int),
              "--recurrence-until": ("recurrence_until", float),
              "--recurrence-above": ("recurrence_above", float),
              "--recurrence-early": ("recurrence_early", float), "--warmup": ("warmup", float)}


def parse_run_args(rest: str) -> dict[str, Any]:
    """`--steps 10 --seed=3` → {"steps": 10, "seed": 3}; ValueError with a message if wrong."""
    words = shlex.split(rest)
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        flag, eq, value = words[i].partition("=")
        if flag not in _RUN_FLAGS:
            raise ValueError(f"unknown option `{flag}`")
        if not eq:
            i += 1
            if i >= len(words):
                raise ValueError(f"`{flag}` needs a value")
            value = words[i]
        key, kind = _RUN_FLAGS[flag]
        try:
            out[key] = kind(value)
        except ValueError:
            raise ValueError(f"`{flag}` needs {'an integer' if kind is int else 'a number'}, not `{value}`") from None
        i += 1
    return out


# ---------------------------------------------------------------------- outside world

def open_with_viewer(paths: list[Path]) -> str | None:
    """Open the images with the desktop's viewer, if there is one; the viewer's name or None."""
    images = [str(p) for p in paths if p.suffix.lower() in (".png", ".jpg")]
    if not images:
        return None
    if sys.platform == "darwin":
        viewer = shutil.which("open")
    elif os.name == "nt":
        for image in images:
            os.startfile(image)  # type: ignore[attr-defined]
        return "the default viewer"
    else:
        has_display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        viewer = shutil.which("xdg-open") if has_display else None
    if viewer is None:
        return None
    for image in images:
        subprocess.Popen([viewer, image], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Path(viewer).name


def internal_error() -> str:
    """An SGL bug, said so, with the traceback to report (the session goes on)."""
    return ("internal error: this is a bug in SGL, please report it with the text below\n"
            + traceback.format_exc().rstrip())
