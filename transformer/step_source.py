"""The exact lines of this package that compute each step, read from the source at run time.

Every step is produced by a call ``record("<name>", ...)`` (or ``r(f"{prefix}.<suffix>", ...)``) in one of
the layer modules. This module parses those files with ``ast``, finds that call, and follows the values it
records back through the statements that computed them (stopping at values recorded earlier, which have
their own step), so the code shown next to a step is always the code that ran: it cannot drift.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from . import attention, embeddings, encoder, feed_forward, layer

# Which module computes which kind of step, by the first part of its name without the layer prefix.
_MODULE_FOR_PREFIX: dict[str, tuple[ModuleType, ...]] = {
    "embeddings": (embeddings,),
    "attn": (attention,),
    "ffn": (feed_forward,),
}
_DEFAULT_MODULES = (layer, encoder)
_COMPOUND = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class StepSource:
    file: str  # path relative to the repository, e.g. "transformer/attention.py"
    lines: tuple[int, ...]  # the line numbers shown, in order
    code: str  # those lines, dedented; "..." marks skipped lines

    @property
    def first_line(self) -> int:
        return self.lines[0]


@dataclass(frozen=True)
class _Statement:
    node: ast.stmt
    parents: tuple[ast.stmt, ...]  # enclosing compound statements inside the function
    records: tuple[tuple[str, frozenset[str]], ...]  # (name suffix, names of the values recorded)
    assigns: frozenset[str]
    uses: frozenset[str]


def _suffix(call: ast.Call) -> str | None:
    """The constant end of a record call's name argument: "embeddings.token", ".q", ".resid_mid" ..."""
    name = call.args[0] if call.args else None
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return name.value
    if isinstance(name, ast.JoinedStr) and name.values and isinstance(name.values[-1], ast.Constant):
        return str(name.values[-1].value)
    return None


def _names(node: ast.AST | None, context: type) -> frozenset[str]:
    if node is None:
        return frozenset()
    return frozenset(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, context))


def _simple_statements(body: list[ast.stmt], parents: tuple[ast.stmt, ...] = ()):
    for statement in body:
        if isinstance(statement, _COMPOUND):
            for field in ("body", "orelse", "finalbody"):
                yield from _simple_statements(getattr(statement, field, []), (*parents, statement))
        else:
            yield statement, parents


@lru_cache(maxsize=None)
def _functions(module: ModuleType) -> dict[str, list[_Statement]]:
    """Each function of ``module``: its simple statements in source order, with what they record and use."""
    functions = {}
    for function in ast.walk(ast.parse(inspect.getsource(module))):
        if not isinstance(function, ast.FunctionDef):
            continue
        statements = []
        for node, parents in _simple_statements(function.body):
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                     and n.func.id in ("record", "r") and len(n.args) == 2]
            records = tuple((s, _names(c.args[1], ast.Load)) for c in calls if (s := _suffix(c)))
            assigns = _names(node, ast.Store)
            statements.append(_Statement(node, parents, records, assigns, _names(node, ast.Load)))
        functions[function.name] = statements
    return functions


# Names that only carry plumbing (the reporter, the step-name prefix), not values worth tracing.
_PLUMBING = frozenset({"r", "n", "name", "record", "self"})


def _trace(statements: list[_Statement], index: int) -> list[ast.stmt]:
    """The record statement at ``index`` and the earlier statements that computed what it records.

    Follows each value back to its most recent assignment; stops at values that an earlier step recorded
    (that step shows its own code) and at values made inside a loop (the output of whole layers).
    """
    target = statements[index]
    recorded_before: set[str] = set()
    for statement in statements[:index]:
        for _, names in statement.records:
            recorded_before |= names
        if statement.records:
            recorded_before |= statement.assigns
    needed = set().union(*(names for _, names in target.records)) - recorded_before - _PLUMBING
    chosen = [target.node]
    for statement in reversed(statements[:index]):
        hits = statement.assigns & needed
        if not hits:
            continue
        needed -= hits
        in_loop = any(isinstance(p, (ast.For, ast.While)) for p in statement.parents)
        if not statement.records and not in_loop:
            chosen.extend(p for p in statement.parents if p not in target.parents and p not in chosen)
            chosen.append(statement.node)
            needed |= statement.uses - recorded_before - _PLUMBING
    return chosen


def step_source(step_name: str, norm_placement: str = "post") -> StepSource:
    """The source lines that compute ``step_name`` (e.g. ``layers.3.attn.pattern``).

    ``norm_placement`` picks between the post-LN and pre-LN layer code for the residual and norm steps.
    """
    kind = step_name.split(".", 2)[2] if step_name.startswith("layers.") else step_name
    prefix = kind.split(".", 1)[0]
    # Literal names ("embeddings.token") match whole; f-string names ("{name}.q") match their last part.
    tail = "." + (kind.split(".", 1)[1] if prefix in _MODULE_FOR_PREFIX and "." in kind else kind)
    unwanted_function = "post_ln" if norm_placement == "pre" else "pre_ln"
    for module in _MODULE_FOR_PREFIX.get(prefix, _DEFAULT_MODULES):
        for function, statements in _functions(module).items():
            if function == unwanted_function:
                continue
            for index, statement in enumerate(statements):
                if any(suffix in (kind, tail) for suffix, _ in statement.records):
                    return _render(module, _trace(statements, index))
    raise KeyError(f"no source line records step {step_name!r}")


def _render(module: ModuleType, nodes: list[ast.stmt]) -> StepSource:
    source_lines, _ = inspect.getsourcelines(module)  # a module's lines start at line 1
    numbers: set[int] = set()
    for node in nodes:
        if isinstance(node, _COMPOUND):
            numbers.add(node.lineno)  # just the header of an enclosing if/for
        else:
            numbers.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    ordered = sorted(numbers)
    pieces, previous = [], None
    for number in ordered:
        if previous is not None and number > previous + 1:
            indent = len(source_lines[number - 1]) - len(source_lines[number - 1].lstrip())
            pieces.append(" " * indent + "...\n")
        pieces.append(source_lines[number - 1])
        previous = number
    code = textwrap.dedent("".join(pieces)).rstrip()
    return StepSource(module.__name__.replace(".", "/") + ".py", tuple(ordered), code)
