"""`sgl repl`: try a constraint, look, try another (DESIGN.md §5).

This module is only the terminal: a prompt_toolkit `PromptSession` with history, colouring,
completion and multi-line entry. What an entry does is decided by `sgl.repl_session.Session`,
which tests drive without a terminal.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.shortcuts import print_formatted_text
from prompt_toolkit.styles import Style

from sgl.repl_editing import completions, tokens
from sgl.repl_session import Reply, Session

BANNER = "SGL {version} — type SGL statements, :help for commands, Ctrl-D to quit"

STYLE = Style.from_dict({
    "comment": "#888888 italic",
    "string": "#5faf5f",
    "number": "#d7875f",
    "keyword": "#5f87d7 bold",
    "setting": "#af5fd7 bold",
    "type": "#00afaf",
    "source": "#d7af00",
    "other": "bg:#af0000",
    "prompt": "#5f87d7 bold",
})


class SGLLexer(Lexer):
    """Colours SGL tokens, line by line (a string never spans lines)."""

    def lex_document(self, document):
        lines = document.lines

        def line_tokens(number: int):
            if number >= len(lines):
                return []
            line = lines[number]
            if line.lstrip().startswith(":"):
                return [("class:keyword", line)]
            return [(f"class:{kind}" if kind not in ("name", "op", "space") else "", text)
                    for kind, text in tokens(line)]

        return line_tokens


class SGLCompleter(Completer):
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_completions(self, document, complete_event):
        try:
            word, candidates = completions(self.session, document.text_before_cursor)
        except Exception:  # completion must never break typing
            return
        for candidate in candidates:
            yield Completion(candidate, start_position=-len(word))


def is_complete(text: str) -> bool:
    """Whether an entry is ready to run: a command, an empty line, text the parser accepts
    as whole statements, or text with a syntax error (shown at once, never a trap)."""
    stripped = text.strip()
    if not stripped or stripped.startswith(":"):
        return True
    try:
        from sgl.syntax.parse import is_complete as parser_says
    except ImportError:
        return _balanced(text)
    try:
        return bool(parser_says(text))
    except Exception:
        return True


def _code(text: str) -> str:
    """`text` without strings and comments (whose brackets do not count)."""
    return re.sub(r'"(?:\\.|[^"\\\n])*"?|#[^\n]*', "", text)


def _balanced(text: str) -> bool:
    """Fallback when no parser is installed: brackets closed outside strings and comments."""
    code = _code(text)
    return sum(code.count(c) for c in "([{") <= sum(code.count(c) for c in ")]}")


def _indent(text: str) -> str:
    """Two spaces per `{` still open: the indentation of the next line of an entry."""
    code = _code(text)
    return "  " * max(code.count("{") - code.count("}"), 0)


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("enter")
    @keys.add("c-j")
    def _(event):
        buffer = event.current_buffer
        state, buffer.complete_state = buffer.complete_state, None
        if state is not None and state.current_completion is not None:
            return                              # Enter picks the highlighted completion
        at_end = not buffer.document.text_after_cursor.strip()
        on_empty_line = buffer.document.current_line.strip() == "" and buffer.text.strip() != ""
        # Enter on an empty line submits whatever is there, so a typo never traps the user
        if at_end and (on_empty_line or is_complete(buffer.text)):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n" + _indent(buffer.document.text_before_cursor))

    @keys.add("}")
    def _(event):
        """A closing brace goes back one level when it starts the line."""
        buffer = event.current_buffer
        line = buffer.document.current_line_before_cursor
        if line.strip() == "" and line.endswith("  "):
            buffer.delete_before_cursor(2)
        buffer.insert_text("}")

    return keys


def history_file() -> History:
    """$SGL_HISTORY, else ~/.cache/sgl/history; kept in memory if neither can be written."""
    path = Path(os.environ.get("SGL_HISTORY") or Path.home() / ".cache" / "sgl" / "history")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def make_prompt(session: Session, *, input=None, output=None, history: History | None = None) -> PromptSession:
    return PromptSession(
        message=lambda: [("class:prompt", f"sgl[{session.next_number()}]> ")],
        prompt_continuation=lambda width, line_number, wrap_count: "...> ".rjust(width),
        multiline=True, key_bindings=_bindings(), lexer=SGLLexer(), completer=SGLCompleter(session),
        complete_while_typing=False, style=STYLE, history=history or history_file(),
        input=input, output=output, enable_history_search=False, include_default_pygments_style=False)


def loop(session: Session, prompt: PromptSession, *, write=None, banner: bool = True) -> int:
    """Read entries until :quit or Ctrl-D; every reply is written (`write`, default the
    prompt's terminal) and the loop goes on after errors."""
    def say(text: str) -> None:
        if not text:
            return
        if write is not None:
            write(text)
        else:
            print_formatted_text(ANSI(text), output=prompt.output)

    if banner:
        from sgl import __version__

        say(BANNER.format(version=__version__))
    while True:
        try:
            entry = prompt.prompt()
        except KeyboardInterrupt:   # Ctrl-C drops the entry being typed
            continue
        except EOFError:            # Ctrl-D
            return 0
        try:
            reply = session.handle(entry)
        except KeyboardInterrupt:
            reply = Reply("cancelled", ok=False)
        say(reply.text)
        if reply.quit:
            return 0


def main(file: str | None = None, *, model: str | None = None, device: str | None = None,
         input=None, output=None, history: History | None = None) -> int:
    """`sgl repl [FILE] [--model M] [--device D]`; returns the exit status."""
    color = output is None and sys.stdout.isatty()
    session = Session(model=model, device=device, color=color)
    prompt = make_prompt(session, input=input, output=output, history=history)
    if file is not None:
        reply = session.load(Path(file))
        print_formatted_text(ANSI(reply.text), output=prompt.output)
        if not reply.ok:
            return 1
    return loop(session, prompt)
