"""SGL, the Self-Guidance Language.

    program = sgl.compile('''
        prompt "a red circle and a blue square"
        use edits
        move(circle, (0.25, 0))
    ''')
    result = program.run()          # the embedded `shapes` model on the CPU
    result.save("out")              # original.png, edited.png, trace.json, report.html

Importing `sgl` is cheap: torch and diffusers load only when a program runs.
"""

from sgl.diagnostics import Diagnostic, SGLError, Span
from sgl.program import Program, compile, check, parse

__all__ = ["compile", "check", "parse", "Program", "SGLError", "Diagnostic", "Span"]
__version__ = "0.1.0"
