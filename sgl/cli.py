"""The `sgl` command line.

Each subcommand is a pair of small functions (its options, its action) registered in
`SUBCOMMANDS`; adding one is a few lines here, with its heavy imports inside its action so
that `sgl check` and `sgl fmt` start fast (no torch, no rich unless colour is needed).

Exit status: 0 success (warnings allowed), 1 diagnostics (errors, or warnings with
`--strict`, or files `fmt --check` would change), 2 usage errors (bad arguments, missing files).
Diagnostics go to stderr; stdout stays empty on error except for `--json`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, NamedTuple

from sgl.diagnostics import Diagnostic, SGLError
from sgl.files import write_text_atomic

EXIT_OK, EXIT_DIAGNOSTICS, EXIT_USAGE = 0, 1, 2
BUG_REPORT = "this is a bug in SGL; please report it, with the program, at the project's issue tracker"


class Subcommand(NamedTuple):
    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A mistake in how `sgl` was called (exit status 2)."""


# ----------------------------------------------------------------------------- output helpers

def _stream_supports(stream, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def _use_color(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


def _public(diag: Diagnostic, debug: bool) -> Diagnostic:
    """Internal errors show their Python traceback (kept in a note) only with --debug."""
    if debug or not diag.code.startswith("E999"):
        return diag
    import attrs

    notes = tuple(n for n in diag.notes if "Traceback (most recent call last)" not in n)
    return attrs.evolve(diag, notes=notes)


def print_diagnostics(diags: list[Diagnostic], sources: dict[str, str], debug: bool = False) -> None:
    """Render diagnostics on stderr: colour on a terminal, ASCII where it cannot show Unicode."""
    from sgl.render import render_all

    if not diags:
        return
    stream = sys.stderr
    text = render_all([_public(d, debug) for d in diags], sources, color=_use_color(stream))
    if not _stream_supports(stream, text):
        text = render_all([_public(d, debug) for d in diags], sources, color=False, ascii_only=True)
    stream.write(text + "\n\n")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _internal_error(exc: BaseException, file: str, debug: bool) -> Diagnostic:
    from sgl.diagnostics import Span

    notes = (BUG_REPORT,)
    if debug:
        notes += ("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip(),)
    return Diagnostic("E999", f"internal compiler error: {type(exc).__name__}: {exc}",
                      Span(file, 1, 1, 1, 1), notes=notes)


def _existing_files(paths: list[str]) -> list[Path]:
    missing = [p for p in paths if p != "-" and not Path(p).is_file()]
    if missing:
        raise UsageError("no such file: " + ", ".join(f"`{p}`" for p in missing))
    return [Path(p) for p in paths]


# ----------------------------------------------------------------------------- sgl check

def _check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="SGL programs to check")
    parser.add_argument("--json", action="store_true", help="print diagnostics as JSON on stdout")
    parser.add_argument("--strict", action="store_true", help="fail on warnings too")


def check_command(args: argparse.Namespace) -> int:
    """Run the whole compiler half (parse, check, lower, passes) on each file."""
    diagnostics: list[Diagnostic] = []
    sources: dict[str, str] = {}
    for path in _existing_files(args.files):
        found, texts = _check_one(path, args.debug)
        diagnostics += found
        sources.update(texts)
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if args.json:
        from sgl.render import diagnostics_json
        import json

        sys.stdout.write(json.dumps(diagnostics_json(diagnostics), indent=2, ensure_ascii=False) + "\n")
    else:
        print_diagnostics(diagnostics, sources, args.debug)
        if diagnostics:
            sys.stderr.write(f"found {_plural(errors, 'error')} and {_plural(warnings, 'warning')}\n")
    if errors or (args.strict and warnings):
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _check_one(path: Path, debug: bool) -> tuple[list[Diagnostic], dict[str, str]]:
    from sgl import compiler

    try:
        result = compiler.check_file(path)
    except SGLError as error:
        return list(error.diagnostics), error.sources
    except Exception as exc:  # noqa: BLE001 - a bug in SGL, reported as such
        return [_internal_error(exc, str(path), debug)], {}
    texts = {}
    try:
        texts[str(path)] = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    texts.update(getattr(result, "texts", None) or {})
    return list(getattr(result, "warnings", ()) or ()), texts


# ----------------------------------------------------------------------------- sgl fmt

def _fmt_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="SGL files to format (`-`: stdin to stdout)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and list the files that would change")


def fmt_command(args: argparse.Namespace) -> int:
    from sgl.syntax.fmt import format_source

    changed: list[str] = []
    failed = 0
    paths = _existing_files(args.files)
    for path in paths:
        name = "<stdin>" if str(path) == "-" else str(path)
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        try:
            formatted = format_source(text, name)
        except SGLError as error:
            print_diagnostics(error.diagnostics, error.sources or {name: text}, args.debug)
            failed += 1
            continue
        if str(path) == "-":
            if not args.check:
                sys.stdout.write(formatted)
            elif formatted != text:
                changed.append(name)
            continue
        if formatted != text:
            changed.append(name)
            if not args.check:
                write_text_atomic(path, formatted)
    if args.check:
        for name in changed:
            sys.stdout.write(f"would reformat {name}\n")
    else:
        unchanged = len(paths) - len(changed) - failed
        sys.stderr.write(f"{_plural(len(changed), 'file')} reformatted, {unchanged} unchanged\n")
    if failed or (args.check and changed):
        return EXIT_DIAGNOSTICS
    return EXIT_OK


def _repl_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="start from this program")
    parser.add_argument("--model", help='the model: "shapes" or a local diffusers folder')
    parser.add_argument("--device", help="where to sample, e.g. cpu or cuda")


def repl_command(args: argparse.Namespace) -> int:
    from sgl.repl import main as repl_main

    if args.file is not None and not Path(args.file).is_file():
        raise UsageError(f"no such file: {args.file}")
    return repl_main(args.file, model=args.model, device=args.device)


# ----------------------------------------------------------------------------- sgl run

def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the SGL program to run")
    parser.add_argument("-o", "--out", metavar="DIR", help="output folder (default: out/<program name>)")
    parser.add_argument("--model", help='"shapes" (the embedded model) or a local diffusers folder')
    parser.add_argument("--device", help="where to sample, e.g. cpu or cuda (default: cuda if present)")
    parser.add_argument("--steps", type=int, help="number of sampling steps")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the program (repeatable), e.g. --set cfg=5")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_setting_value(text: str):
    """`--set` values: integers, numbers, `WxH` resolutions, else strings (a value quoted as in
    SGL source, `--set 'layers="up_blocks.1"'`, loses its quotes)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    from sgl.check.settings import parse_size

    return parse_size(text) or text


def run_command(args: argparse.Namespace) -> int:
    """Compile and run a program; write images, trace.json and report.html to the folder."""
    import sgl

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {args.file}")
    overrides = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_setting_value(value.strip())
    for key in ("model", "steps", "seed"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    program = sgl.compile(path, **overrides)
    if program.energy.warnings:
        print_diagnostics(list(program.energy.warnings), program.energy.texts, args.debug)
    result = program.run(device=args.device, progress=not args.quiet)
    out = result.save(Path(args.out) if args.out else Path("out") / path.stem)
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    sys.stdout.write(f"wrote {out}/original.png, {out}/edited.png, {out}/trace.json, {out}/report.html\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- sgl ir

def _ir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the SGL program to compile")
    parser.add_argument("--json", action="store_true", help="print the IR as JSON")
    parser.add_argument("--no-opt", dest="optimize", action="store_false",
                        help="skip the passes (folding, dead terms, gradient cut)")


def ir_command(args: argparse.Namespace) -> int:
    """Print the energy IR: shared nodes once, then the terms, then what the runtime records."""
    from sgl import compiler
    from sgl.ir.printer import format_ir, format_ir_json

    program = compiler.check_file(_existing_files([args.file])[0], optimize=args.optimize)
    print_diagnostics(list(program.warnings), program.texts, args.debug)
    if args.json:
        import json

        sys.stdout.write(json.dumps(format_ir_json(program), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_ir(program))
    return EXIT_OK


# ----------------------------------------------------------------------------- sgl bench

BENCHMARKS = {
    "edits": ("sgl.bench.edits", "edit quality on the embedded shapes model, measured from pixels"),
    "speed": ("sgl.bench.speed", "guided sampling vs plain diffusers sampling: time and memory ratios"),
    "energy": ("sgl.bench.energy", "the IR evaluator vs the same energy hand-written in torch"),
    "check": ("sgl.bench.check", "wall time of `sgl check` per example, interpreter start included"),
}


def _bench_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS), help="; ".join(
        f"{name}: {text}" for name, (_, text) in sorted(BENCHMARKS.items())))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of that benchmark (see `sgl bench NAME --help`)")


def bench_command(args: argparse.Namespace) -> int:
    """Each benchmark module parses its own options (imported only when run: they need torch)."""
    import importlib

    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    return int(module.main(args.options) or 0)


# ----------------------------------------------------------------------------- sgl explain

# Modules whose `EXPLANATIONS` dict ({code: text}) documents their diagnostic codes (the
# runtime's evaluator too: its E240–E244 are reported by `sgl run`).
EXPLAINING_MODULES = ("sgl.syntax.errors", "sgl.check.errors", "sgl.ir.errors", "sgl.runtime.evaluate")


def _explain_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", metavar="CODE", help="a diagnostic code, e.g. E006")


def explanations() -> dict[str, str]:
    import importlib

    found: dict[str, str] = {}
    for name in EXPLAINING_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found.update(getattr(module, "EXPLANATIONS", {}) or {})
    return found


def explain_command(args: argparse.Namespace) -> int:
    code = args.code.strip().upper()
    known = explanations()
    if code not in known:
        raise UsageError(f"no explanation for `{code}`; explained codes: {', '.join(sorted(known))}")
    sys.stdout.write(f"{code}: {known[code].rstrip()}\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- the table

SUBCOMMANDS: dict[str, Subcommand] = {
    "check": Subcommand("check programs without running them", _check_options, check_command),
    "fmt": Subcommand("format programs in the canonical layout", _fmt_options, fmt_command),
    "run": Subcommand("run a program: sample the original and the edited image", _run_options, run_command),
    "bench": Subcommand("run a benchmark and print its measured numbers", _bench_options, bench_command),
    "repl": Subcommand("try constraints interactively", _repl_options, repl_command),
    "ir": Subcommand("print a program's energy IR", _ir_options, ir_command),
    "explain": Subcommand("explain a diagnostic code, with an example and a fix", _explain_options,
                          explain_command),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sgl", description="SGL, the Self-Guidance Language: steer diffusion models with constraints")
    parser.add_argument("--version", action="version", version=f"sgl {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, sub in SUBCOMMANDS.items():
        sub_parser = commands.add_parser(name, help=sub.help, description=sub.help)
        sub.options(sub_parser)
        sub_parser.add_argument("--debug", action="store_true",
                                help="show Python tracebacks of internal errors")
    return parser


def _version() -> str:
    from sgl import __version__  # not importlib.metadata: it costs more than parsing a program

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"sgl {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except SGLError as error:
        print_diagnostics(error.diagnostics, error.sources, getattr(args, "debug", False))
        return EXIT_DIAGNOSTICS
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a bare traceback
        print_diagnostics([_internal_error(exc, "<sgl>", getattr(args, "debug", False))], {},
                          getattr(args, "debug", False))
        return EXIT_DIAGNOSTICS


if __name__ == "__main__":
    sys.exit(main())
