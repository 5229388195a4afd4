"""Long explanations of the checker's diagnostic codes (`sgl explain E031`).

Each entry says what the rule is and why it exists, with a program that breaks it and the same
program fixed. Tests check every example against the checker, so an explanation cannot drift
from what the checker does.
"""

from __future__ import annotations

import attrs

P = 'prompt "a red circle and a blue square"\n'


@attrs.frozen
class Explanation:
    code: str
    title: str
    why: str
    example: str | None        # a whole program with the mistake (None: the parser catches it first)
    fixed: str | None          # the same program, fixed
    files: dict = attrs.field(factory=dict)   # other files the examples read, by relative path


def _e(code, title, why, example=None, fixed=None, files=None) -> Explanation:
    return Explanation(code, title, why, example, fixed, dict(files or {}))


EXPLANATIONS: dict[str, Explanation] = {e.code: e for e in [
    _e("E010", "unknown stdlib module",
       "`use NAME` imports a module of the standard library (`edits`); a file is imported with a "
       "quoted path, `use \"lib.sgl\"`.",
       P + "use edit\nmove(circle, (0.2, 0))\n", P + "use edits\nmove(circle, (0.2, 0))\n"),
    _e("E011", "imported file not found",
       "`use \"path\"` reads a file relative to the file that contains the `use`.",
       P + 'use "lib/helpers.sgl"\n', P + 'use "helpers.sgl"\n', {"helpers.sgl": "let k = 1\n"}),
    _e("E012", "import cycle",
       "Files may not use each other in a circle: definitions must have an order. Move what both "
       "need into a third file.",
       P + 'use "a.sgl"\n', P + 'use "c.sgl"\n',
       {"a.sgl": 'use "b.sgl"\n', "b.sgl": 'use "a.sgl"\n', "c.sgl": "let k = 1\n"}),
    _e("E013", "statement not allowed in an imported file",
       "A file read with `use` is a library: it defines `fn`, `let` and `object`. Settings, images "
       "and constraints belong to the main program, so that reading a library never changes what "
       "is generated.",
       P + 'use "lib.sgl"\n', P + 'use "good.sgl"\nsize(circle) = 0.2\n',
       {"lib.sgl": "size(circle) = 0.2\n", "good.sgl": "let k = 1\n"}),
    _e("E014", "`extern fn` outside the standard library",
       "Intrinsics are implemented in Python, one function each; only `stdlib/prelude.sgl` "
       "declares them. Write new functions in SGL.",
       P + "extern fn area(o: Object) -> Scalar\nsize(circle) = area(square)\n",
       P + "fn area(o: Object) -> Scalar = size(o)\nsize(circle) = area(square)\n"),
    _e("E015", "definition inside a block",
       "A `{ … }` block (a `for` body or a constraint macro) holds constraints, loops and `let`; "
       "settings, imports and definitions live at the top level of a file.",
       P + "for o in [circle] {\n    object c = \"red circle\"\n}\n",
       P + "object c = \"red circle\"\nfor o in [c] {\n    size(o) = 0.2\n}\n"),
    _e("E020", "unknown setting",
       "Settings are a fixed table: prompt, negative, seed, steps, cfg, resolution, strength, "
       "model, scheduler, layers, features, start, gradient, recurrence, recurrence_until, recurrence_above, "
       "recurrence_early, warmup.",
       P + "sead 7\n", P + "seed 7\n"),
    _e("E021", "setting given twice", "Each setting has one value; the second would silently win.",
       P + "seed 1\nseed 2\n", P + "seed 2\n"),
    _e("E022", "setting value of the wrong kind",
       "prompt/negative/model/scheduler/layers/start/gradient take strings, seed, steps and recurrence "
       "integers, cfg and strength numbers, warmup, recurrence_until, recurrence_above and recurrence_early "
       "numbers from 0 to 1, "
       "resolution `N` or `WxH`.",
       P + "seed 7.5\n", P + "seed 7\n"),
    _e("E023", "missing prompt",
       "Every program says what to generate; constraints name the prompt's words.",
       "seed 7\n", P + "seed 7\n"),
    _e("E024", "setting out of range",
       "steps and recurrence must be at least 1, warmup, recurrence_until, recurrence_above and "
       "recurrence_early from 0 to 1 "
       "and a resolution positive.",
       P + "steps 0\n", P + "steps 20\n"),
    _e("E025", "unknown scheduler",
       "The sampler is one of ddim (the default), ddpm, pndm, euler, euler_a, dpm.",
       P + 'scheduler "dimm"\n', P + 'scheduler "ddim"\n'),
    _e("E026", "setting used as a value",
       "Settings configure the run; constraints cannot read them. Name a shared number with `let`.",
       P + "cfg 5\nsize(circle) = size₀(circle) * cfg\n",
       P + "let k = 5\nsize(circle) = size₀(circle) * k\n"),
    _e("E027", "`start` names no loaded image",
       "`start \"p\"` edits the real image `p`: the guided run starts from its DDIM-inverted noise "
       "and `orig` is that image, so it must name an `image … = load …`.",
       'prompt "a red circle"\nimage p = load "x.png" caption "a red circle"\nstart "photo"\n',
       'prompt "a red circle"\nimage p = load "x.png" caption "a red circle"\nstart "p"\n',
       files={"x.png": ""}),
    _e("E028", "unknown gradient mode",
       "`gradient \"raw\"` adds the paper's v·σ_t·∇g to the noise prediction; `gradient \"unit\"` "
       "first scales ∇g to unit RMS, so that `strength` is a step size independent of the "
       "energy's scale (the embedded `shapes` model's default); `gradient \"balanced\"` also "
       "divides every term's gradient by its own size first, so that each term's weight is its "
       "share of the step.",
       P + 'gradient "norm"\n', P + 'gradient "unit"\n'),
    _e("E029", "`recurrence` with a stateful scheduler",
       "`recurrence N` takes every guided step N times: it noises the step's result back to the "
       "step's noise level and steps again (Universal Guidance's self-recurrence), which needs a "
       "sampler whose step depends only on the current latent: ddim (the default) or ddpm.",
       P + 'recurrence 3\nscheduler "euler"\n', P + 'recurrence 3\nscheduler "ddim"\n'),
    _e("E030", "unknown function",
       "Functions come from the prelude, `core` (always imported), modules you `use`, and your "
       "own `fn` definitions.",
       P + "centorid(circle) = (0.7, 0.5)\n", P + "centroid(circle) = (0.7, 0.5)\n"),
    _e("E031", "not a word of the prompt",
       "A bare name is a variable, a declared `object` or `image`, or a word of the prompt (or of "
       "an image's caption): properties exist only for words the model was given.",
       'prompt "a photo of a dog"\ncentroid(dgo) = (0.8, 0.5)\n',
       'prompt "a photo of a dog"\ncentroid(dog) = (0.8, 0.5)\n'),
    _e("E032", "unknown source",
       "`f[src](…)` reads from `orig` (the unguided run) or a declared `image`.",
       P + 'image ref = generate "a green circle"\nsize(circle) = size[rfe](circle)\n',
       P + 'image ref = generate "a green circle"\nsize(circle) = size[ref](circle)\n'),
    _e("E033", "defined twice", "One name, one meaning: values and functions may not be redefined.",
       P + "let k = 1\nlet k = 2\n", P + "let k = 1\nlet k2 = 2\n"),
    _e("E034", "object phrase not in the prompt",
       "`object c = \"…\"` names words of the prompt (or of one image's caption); the model has "
       "no attention for other words.",
       P + 'object c = "red cirle"\nsize(c) = 0.2\n', P + 'object c = "red circle"\nsize(c) = 0.2\n'),
    _e("E035", "function used as a value", "A function must be called to give a value.",
       P + "size(circle) = size\n", P + "size(circle) = size(square)\n"),
    _e("E036", "unknown type",
       "Types are Scalar, Vec2, Map, Features, Vector, Object, Image, String, Constraint, List[T].",
       P + "fn twice(v: Scalr) = v * 2\n", P + "fn twice(v: Scalar) = v * 2\n"),
    _e("E037", "recursion",
       "Functions and lets are expanded at compile time, so they cannot refer to themselves.",
       P + "let a = a + 1\n", P + "let a = 1\n"),
    _e("E038", "reserved source name", "`orig` and `self` name the two runs every program has.",
       P + 'image orig = generate "a green circle"\n', P + 'image ref = generate "a green circle"\n'),
    _e("E039", "image file not found", "`load` and `mask` read files relative to the program.",
       P + 'image p = load "missing.png" caption "a red circle"\nsize(circle) = size[p](circle)\n',
       P + 'image p = load "scene.png" caption "a red circle"\nsize(circle) = size[p](circle)\n',
       {"scene.png": ""}),
    _e("E040", "constraint macro used as a value",
       "A `fn f(…) { … }` adds constraints; it has no value to compute with. Call it on its own line.",
       P + "use edits\nsize(circle) = keep(square)\n", P + "use edits\nkeep(square)\n"),
    _e("E041", "value used as a statement",
       "A statement must constrain something; a bare value constrains nothing.",
       P + "centroid(circle)\n", P + "centroid(circle) = (0.5, 0.5)\n"),
    _e("E042", "source on a constraint macro",
       "Sources apply to values; a macro reads the generated image and sources inside it.",
       P + "use edits\nkeep₀(square)\n", P + "use edits\nkeep(square)\n"),
    _e("E043", "wrong number of arguments", "Every parameter without a default needs an argument.",
       P + "size(circle, square) = 0.2\n", P + "size(circle) = 0.2\n"),
    _e("E044", "parameter declared twice", "Parameter names must differ.",
       P + "fn f(a: Scalar, a: Scalar) = a\n", P + "fn f(a: Scalar, b: Scalar) = a + b\n"),
    _e("E045", "parameter without default after one with a default",
       "Arguments are positional, so defaults come last.",
       P + "fn f(a: Scalar = 1, b: Scalar) = a + b\n", P + "fn f(b: Scalar, a: Scalar = 1) = a + b\n"),
    _e("E046", "bad signature", "A constraint macro returns a Constraint; an `extern fn` names its return type.",
       P + "fn f(o: Object) -> Scalar { size(o) = 0.2 }\n", P + "fn f(o: Object) { size(o) = 0.2 }\n"),
    _e("E047", "source used as a value",
       "`orig` and images are runs to read from, not objects; as a value a source can only be "
       "passed to a parameter of type Image.",
       P + "size(circle) = size(orig)\n", P + "size(circle) = size₀(circle)\n"),
    _e("E048", "source is not an image",
       "`f[r](…)` with a variable `r` reads from the run that `r` holds, so `r` must be an Image: "
       "a parameter `r: Image`, a `for` variable over images, or a `let` of one.",
       P + "fn big(o: Object, r: Scalar) { size(o) = size[r](o) * 2 }\nbig(circle, 1)\n",
       P + "fn big(o: Object, r: Image) { size(o) = size[r](o) * 2 }\nbig(circle, orig)\n"),
    _e("E050", "operator types",
       "`+ -` need equal types; `* /` scale a Vec2, Map or Vector by a Scalar, and multiply or "
       "divide Maps cell by cell.",
       P + "centroid(circle) = centroid₀(circle) + 0.3\n",
       P + "centroid(circle) = centroid₀(circle) + (0.3, 0)\n"),
    _e("E051", "negation type", "Unary minus applies to Scalar, Vec2, Map and Vector.",
       P + "let v = -circle\n", P + "let v = -centroid(circle)\ncentroid(circle) = v\n"),
    _e("E052", "tuple arity", "A tuple is a Vec2: a point or offset `(x, y)`.",
       P + "centroid(circle) = (0.2, 0.5, 0)\n", P + "centroid(circle) = (0.2, 0.5)\n"),
    _e("E053", "tuple item type", "Both coordinates of a Vec2 are Scalars.",
       P + "let v = (circle, 0.5)\n", P + "let v = (centroid(circle).x, 0.5)\ncentroid(circle) = v\n"),
    _e("E054", "attribute", "`.x` and `.y` read the coordinates of a Vec2.",
       P + "size(circle).x < 0.5\n", P + "centroid(circle).x < 0.5\n"),
    _e("E055", "list types", "A list holds items of one type, and at least one.",
       P + "for o in [circle, 0.5] { size(o) = 0.2 }\n", P + "for o in [circle, square] { size(o) = 0.2 }\n"),
    _e("E056", "argument type", "Each argument must have its parameter's type.",
       P + "size(circle) = size(0.5)\n", P + "size(circle) = size(square)\n"),
    _e("E057", "no matching overload", "Some intrinsics have several signatures; none fits these arguments.",
       P + "minimize norm(attn(circle))\n", P + "minimize norm(centroid(circle))\n"),
    _e("E058", "return type", "A function's body must have the type it declares.",
       P + "fn mid(o: Object) -> Scalar = centroid(o)\n", P + "fn mid(o: Object) -> Vec2 = centroid(o)\n"),
    _e("E059", "default type", "A parameter's default must have the parameter's type.",
       P + "fn f(a: Scalar = (1, 2)) = a\n", P + "fn f(a: Scalar = 1) = a\n"),
    _e("E060", "equality of different types", "`=` measures a distance between two values of one type.",
       P + "centroid(circle) = size₀(circle)\n", P + "centroid(circle) = centroid₀(circle)\n"),
    _e("E061", "equality of a type without a distance",
       "`=` compares Scalar, Vec2, Map, Vector or Features values; objects and lists have no distance.",
       P + "circle = square\n", P + "appearance(circle) = appearance₀(square)\n"),
    _e("E062", "inequality of non-Scalars", "`< > <= >=` are hinges on Scalars; compare one coordinate.",
       P + "centroid(circle) < centroid(square)\n", P + "centroid(circle).x < centroid(square).x\n"),
    _e("E063", "objective of a non-Scalar", "`minimize`/`maximize` need one number; reduce maps first.",
       P + "maximize attn(circle)\n", P + "maximize max(attn(circle))\n"),
    _e("E064", "for over a non-list", "`for` iterates over `[a, b]`, `objects()` or `others(o)`.",
       P + "for o in circle { size(o) = 0.2 }\n", P + "for o in [circle] { size(o) = 0.2 }\n"),
    _e("E070", "window out of range", "A window is a part of the sampling steps, from 0% to 100%.",
       P + "size(circle) = 0.2 from 20% to 120%\n", P + "size(circle) = 0.2 from 20% to 100%\n"),
    _e("E071", "empty window", "A window's start must come before its end.",
       P + "size(circle) = 0.2 from 70% to 30%\n", P + "size(circle) = 0.2 from 30% to 70%\n"),
    _e("E072", "modifier given twice", "Each modifier appears at most once (the parser reports E009 first)."),
    _e("E073", "`using` not on `=`", "Only equalities have a distance to choose.",
       P + "size(circle) < 0.1 using l2\n", P + "size(circle) = 0.1 using l2\n"),
    _e("E074", "`margin` not on an inequality", "A margin shifts a hinge; an equality has none.",
       P + "size(circle) = 0.1 margin 0.02\n", P + "size(circle) < 0.1 margin 0.02\n"),
    _e("E075", "weight not constant",
       "Weights are numbers known before sampling: numbers, `let`s of numbers, Scalar parameters, "
       "with arithmetic and `relu`, `abs`, `sqrt`, `norm`, `dot`.",
       P + "size(circle) = 0.3 weight size₀(square)\n", P + "size(circle) = 0.3 weight 2\n"),
    _e("E076", "weight or margin not a Scalar", "A weight or margin is one number.",
       P + "size(circle) = 0.3 weight (1, 2)\n", P + "size(circle) = 0.3 weight 2\n"),
    _e("E077", "unknown distance", "`using` takes `l1` or `l2` (the parser reports other words first)."),
    _e("E078", "argument must be constant",
       "The macro uses this parameter as a weight, so the argument must be known before sampling.",
       P + "use edits\nkeep(square, size₀(circle))\n", P + "use edits\nkeep(square, 2)\n"),
    _e("W001", "target outside the image", "Positions are image fractions; a target outside [0, 1]² cannot be reached.",
       P + "centroid(circle) = (1.2, 0.5)\n", P + "centroid(circle) = (0.9, 0.5)\n"),
    _e("W002", "stop word used as an object",
       "Articles, prepositions and words like `photo` are prompt words, but their attention is "
       "spread over the image: they do not locate a thing.",
       'prompt "a photo of a dog"\ncentroid(photo) = (0.5, 0.5)\n',
       'prompt "a photo of a dog"\ncentroid(dog) = (0.5, 0.5)\n'),
    _e("W003", "source on a call that reads nothing",
       "A source picks the run that attention and activations are read from; a function that "
       "reads neither (a box, a coordinate map, `objects()`) is the same in every run.",
       P + "shape(circle) = box[orig](0.2, 0.2, 0.6, 0.6)\n",
       P + "shape(circle) = box(0.2, 0.2, 0.6, 0.6)\n"),
]}


def explain(code: str) -> str | None:
    """The explanation of `code` as text (title first, no code), or None for a code the checker
    does not own."""
    e = EXPLANATIONS.get(code.upper())
    if e is None:
        return None
    parts = [e.title, "", e.why]
    if e.example:
        parts += ["", "For example:", "", *("    " + line for line in e.example.splitlines())]
    if e.fixed:
        parts += ["", "Fixed:", "", *("    " + line for line in e.fixed.splitlines())]
    return "\n".join(parts) + "\n"


def explanation_texts() -> dict[str, str]:
    """{code: text} for `sgl explain`."""
    return {code: explain(code) for code in EXPLANATIONS}
