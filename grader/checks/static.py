"""Static check of test cells: assertions that an "always equal" value would pass.

Nothing runs: the test cells are read as Python (:mod:`ast`). The rule, also explained to
instructors in ``docs/how-to/tests-that-resist-cheating.md``:

- A value is *the learner's* when it comes from a name their solution cells define (a
  function, class or variable), directly (``f(2)``, ``Vector2(1, 2) + v``, ``obj.attr``,
  ``xs[0]``) or through a variable the notebook assigned from one (``top = top_k(text, 2)``).
  Built-ins whose result has a fixed type of their own (``len``, ``repr``, ``list``, ``sorted``,
  ``isinstance``, ``math.isclose``...) make a value that is no longer the learner's.
- An assertion is *weak* when it compares the learner's value with ``==``, ``!=``, ``<``,
  ``<=``, ``>``, ``>=``, ``in`` or ``not in`` (the learner's object answers those through
  ``__eq__``, ``__lt__``, ``__contains__``...), asserts its truthiness (``assert x``,
  ``assert not f(y)``: ``__bool__`` answers), or checks such a comparison with ``is True``.
- A weak assertion is *covered* when the same cell also checks the exact type of a value of
  the same learner name: ``type(x) is T``, ``type(x) == T``, ``type(x) in (T, U)`` or
  ``isinstance(x, T)``, where ``T`` is not a class the learner writes (their class has their
  ``__eq__``). The check is anywhere in the cell: a cell fails as a whole.

Every uncovered weak assertion is a warning (one per cell and learner name, with the count),
and the message says what to write instead. The rule is a lint, not a proof: the dynamic check
(:mod:`grader.checks.dynamic`) grades a real cheater.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field

from grader.checks.cells import (
    Cell,
    defined_classes,
    defined_names,
    parse_cell,
    python_source,
    target_names,
)
from grader.checks.findings import Finding, Level

#: Comparisons that the learner's object answers (``is``/``is not`` it cannot).
_ANSWERED_BY_OBJECT = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
#: Built-ins that hand back the learner's object or what its own method returned.
_PASS_THROUGH = frozenset({"abs", "bool", "getattr", "iter", "max", "min", "next", "reversed"})
_MAX_QUOTE = 70
_DISPLAYS = (
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
    ast.ListComp,
    ast.SetComp,
    ast.GeneratorExp,
    ast.DictComp,
)

Roots = frozenset[str]


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 3] + "..."


class _Flow:
    """Which variables hold the learner's values, by the learner names they came from."""

    def __init__(self, learner_names: Iterable[str]) -> None:
        self.learner: frozenset[str] = frozenset(learner_names)
        self.derived: dict[str, Roots] = {name: frozenset({name}) for name in self.learner}

    def refs(self, node: ast.AST | None) -> Roots:
        """Learner names anything in ``node`` comes from."""
        if node is None:
            return frozenset()
        roots: set[str] = set()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                roots |= self.derived.get(sub.id, frozenset())
        return frozenset(roots)

    def _bind(self, targets: Iterable[ast.AST], roots: Roots) -> None:
        for target in targets:
            for name in target_names(target):
                if name in self.learner:
                    continue
                if roots:
                    self.derived[name] = roots
                else:
                    self.derived.pop(name, None)

    def follow(self, tree: ast.Module) -> None:
        """Record the variables a cell assigns from learner values (twice, for loops)."""
        nodes = sorted(
            (n for n in ast.walk(tree) if isinstance(n, ast.stmt | ast.expr)),
            key=lambda n: (n.lineno, n.col_offset),
        )
        for _ in range(2):
            for node in nodes:
                self._follow_one(node)
            for comp in (n for n in ast.walk(tree) if isinstance(n, ast.comprehension)):
                self._bind([comp.target], self.refs(comp.iter))

    def _follow_one(self, node: ast.AST) -> None:
        if isinstance(node, ast.Assign):
            self._bind(node.targets, self.refs(node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind([node.target], self.refs(node.value))
        elif isinstance(node, ast.AugAssign):
            old = self.refs(node.target)
            self._bind([node.target], old | self.refs(node.value))
        elif isinstance(node, ast.NamedExpr):
            self._bind([node.target], self.refs(node.value))
        elif isinstance(node, ast.For | ast.AsyncFor):
            self._bind([node.target], self.refs(node.iter))
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if item.optional_vars is not None:
                    self._bind([item.optional_vars], self.refs(item.context_expr))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # A test's own helper that calls the learner's code gives the learner's values.
            roots = set(self.refs(ast.Module(body=node.body, type_ignores=[])))
            for decorator in node.decorator_list:
                roots |= self.refs(decorator)
            if isinstance(node, ast.ClassDef):
                roots |= {r for base in node.bases for r in self.refs(base)}
            if node.name not in self.learner:
                self._bind([ast.Name(id=node.name)], frozenset(roots))

    def value_of_learner(self, node: ast.AST) -> Roots:
        """The learner names whose objects decide this expression's value (empty: none do)."""
        if isinstance(node, ast.Name):
            return self.derived.get(node.id, frozenset())
        if isinstance(node, ast.Attribute | ast.Subscript | ast.Starred):
            return self.value_of_learner(node.value)
        if isinstance(node, ast.NamedExpr):
            return self.value_of_learner(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _PASS_THROUGH:
                return frozenset().union(*(self.value_of_learner(a) for a in node.args))
            return self.value_of_learner(func)
        if isinstance(node, ast.BinOp):
            return self.value_of_learner(node.left) | self.value_of_learner(node.right)
        if isinstance(node, ast.UnaryOp):
            return self.value_of_learner(node.operand)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self.value_of_learner(v) for v in node.values))
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            # A list of the learner's objects compares element by element: their `__eq__`.
            return frozenset().union(*(self.value_of_learner(e) for e in node.elts))
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            return self.value_of_learner(node.elt)
        if isinstance(node, ast.Dict):
            return frozenset().union(
                *(self.value_of_learner(v) for v in node.values if v is not None)
            )
        if isinstance(node, ast.DictComp):
            return self.value_of_learner(node.value)
        if isinstance(node, ast.IfExp):
            return self.value_of_learner(node.body) | self.value_of_learner(node.orelse)
        if isinstance(node, ast.Compare):
            if any(isinstance(op, _ANSWERED_BY_OBJECT) for op in node.ops):
                operands = [node.left, *node.comparators]
                return frozenset().union(*(self.value_of_learner(o) for o in operands))
        return frozenset()


def _type_call_argument(node: ast.AST) -> ast.AST | None:
    """``x`` of ``type(x)``, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "type"
        and len(node.args) == 1
        and not node.keywords
    ):
        return node.args[0]
    return None


def _foreign_type(node: ast.AST, learner: frozenset[str]) -> bool:
    """Whether the type expression names a type the learner does not write."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return not names or bool(names - learner)


def _type_checked(tree: ast.Module, flow: _Flow) -> Roots:
    """Learner names of which the cell checks the exact type of some value."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and len(node.args) == 2
            and _foreign_type(node.args[1], flow.learner)
        ):
            roots |= flow.refs(node.args[0])
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, a, b in zip(node.ops, operands, operands[1:], strict=False):
                if not isinstance(op, ast.Is | ast.Eq | ast.In):
                    continue
                for checked, kind in ((a, b), (b, a)):
                    argument = _type_call_argument(checked)
                    if argument is not None and _foreign_type(kind, flow.learner):
                        roots |= flow.refs(argument)
    return frozenset(roots)


@dataclass
class _Weak:
    """Weak assertions of one cell that involve the same learner names."""

    roots: Roots
    line: int
    kind: str
    quote: str
    subject: str
    expected_type: str
    #: The learner's values sit in a list (or other) display the test built.
    container: bool = False
    count: int = 1


def _expected_type(node: ast.AST) -> str:
    """The type an expected value has, when it is written out (``3`` -> ``int``)."""
    if isinstance(node, ast.Constant) and node.value is not None:
        return type(node.value).__name__
    literal = {
        ast.List: "list",
        ast.ListComp: "list",
        ast.Tuple: "tuple",
        ast.Dict: "dict",
        ast.DictComp: "dict",
        ast.Set: "set",
        ast.SetComp: "set",
        ast.JoinedStr: "str",
    }
    return next((name for cls, name in literal.items() if isinstance(node, cls)), "")


def _weakness(node: ast.expr, flow: _Flow, source: str) -> _Weak | None:
    """How one conjunct of an assertion can be passed by an always-equal value, if it can."""
    segment = ast.get_source_segment(source, node) or ast.unparse(node)
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        for value in node.values:
            weak = _weakness(value, flow, source)
            if weak is not None:
                return weak
        return None
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        if any(isinstance(op, _ANSWERED_BY_OBJECT) for op in node.ops):
            for index, operand in enumerate(operands):
                roots = flow.value_of_learner(operand)
                if roots:
                    others = operands[:index] + operands[index + 1 :]
                    # Only an (in)equality says what type the learner's value should have.
                    equality = all(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
                    types = map(_expected_type, others) if equality else iter(())
                    expected = next((t for t in types if t), "")
                    subject = ast.get_source_segment(source, operand) or ast.unparse(operand)
                    weak = _Weak(roots, node.lineno, "compare", segment, subject, expected)
                    weak.container = isinstance(operand, _DISPLAYS)
                    return weak
            return None
        # `is` / `is not`: the learner cannot fake identity, but `(x == y) is True` only
        # asks their `__eq__`.
        for operand in operands:
            if isinstance(operand, ast.Compare):
                roots = flow.value_of_learner(operand)
                if roots:
                    subject = ast.get_source_segment(source, operand.left) or ""
                    return _Weak(roots, node.lineno, "is-of-compare", segment, subject, "")
        return None
    negated = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    inner = node.operand if isinstance(node, ast.UnaryOp) and negated else node
    roots = flow.value_of_learner(inner)
    if roots:
        subject = ast.get_source_segment(source, inner) or ast.unparse(inner)
        expected = "False" if negated else "True"
        return _Weak(roots, node.lineno, "truthiness", segment, subject, expected)
    return None


def _conjuncts(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [c for value in node.values for c in _conjuncts(value)]
    return [node]


def _advice(weak: _Weak, classes: frozenset[str]) -> str:
    names = ", ".join(f"`{name}`" for name in sorted(weak.roots))
    more = f" ({weak.count - 1} more like it in this cell)" if weak.count > 1 else ""
    subject = _quote(weak.subject)
    never = f"and the cell never checks the type of what {names} gives{more}"
    if weak.roots <= classes:
        # Their class, their `__eq__`: a type check against it proves nothing.
        fix = (
            f"The learner writes {names} and its `__eq__`: also compare values whose type you "
            "know (attributes with `type(v.x) is int`, `repr(v) == ...`, `(v == other) is "
            "False` for a different value)."
        )
    elif weak.kind == "truthiness":
        fix = (
            f"Write `assert {subject} is {weak.expected_type}`, or check "
            f"`type({subject}) is bool` first."
        )
    elif weak.kind == "is-of-compare":
        fix = f"Check `type({subject}) is <the type you expect>` first."
    elif weak.container:
        fix = (
            "Check the type of each element first: `assert all(type(x) is <the type you "
            f"expect> for x in {subject})`, then compare."
        )
    else:
        expected = weak.expected_type or "<the type you expect>"
        floats = " (for floats: `math.isclose`)" if expected == "float" else ""
        fix = f"Check the type first: `assert type({subject}) is {expected}`, then compare{floats}."
    if weak.kind == "truthiness":
        problem = (
            f"`assert {_quote(weak.quote)}` only asks the learner's object whether it is true "
            "(its `__bool__`)"
        )
    elif weak.kind == "is-of-compare":
        problem = f"`{_quote(weak.quote)}` only shows that the learner's `__eq__` returned True"
    else:
        problem = (
            f"`{_quote(weak.quote)}` passes for an object whose `__eq__` (and other "
            "comparisons) always say yes"
        )
    return f"{problem}, {never}. {fix}"


@dataclass
class NotebookScan:
    """The static check of one notebook: which names are the learner's, then each cell."""

    course: str
    assignment: str
    notebook: str
    cells: list[Cell]
    findings: list[Finding] = field(default_factory=list)

    def _finding(self, cell: Cell, check: str, level: Level, line: int | None, text: str) -> None:
        self.findings.append(
            Finding(
                level=level,
                check=check,
                course=self.course,
                assignment=self.assignment,
                notebook=self.notebook,
                cell_id=cell.cell_id,
                grade_id=cell.grade_id,
                line=line,
                message=text,
            )
        )

    def run(self) -> list[Finding]:
        """Check every test cell; returns (and keeps) the findings."""
        learner: list[str] = []
        classes: set[str] = set()
        trees: dict[int, ast.Module] = {}
        for cell in self.cells:
            try:
                trees[cell.index] = parse_cell(cell.source)
            except SyntaxError as exc:
                if cell.is_test or cell.is_solution:
                    self._finding(
                        cell, "syntax", "error", exc.lineno, f"not valid Python: {exc.msg}"
                    )
                continue
            if cell.is_solution:
                learner += defined_names(cell.source)
                classes |= defined_classes(cell.source)
        flow = _Flow(learner)
        for cell in self.cells:
            tree = trees.get(cell.index)
            if tree is None or cell.is_solution:
                continue
            flow.follow(tree)
            if cell.is_test:
                self._check_test_cell(cell, tree, flow, frozenset(classes))
        return self.findings

    def _check_test_cell(
        self, cell: Cell, tree: ast.Module, flow: _Flow, classes: frozenset[str]
    ) -> None:
        source = python_source(cell.source)
        checked = _type_checked(tree, flow)
        groups: dict[Roots, _Weak] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assert):
                continue
            for conjunct in _conjuncts(node.test):
                weak = _weakness(conjunct, flow, source)
                if weak is None or weak.roots & checked:
                    continue
                if weak.roots in groups:
                    groups[weak.roots].count += 1
                else:
                    groups[weak.roots] = weak
        for weak in sorted(groups.values(), key=lambda w: w.line):
            self._finding(cell, "weak-assert", "warning", weak.line, _advice(weak, classes))


def check_notebook(course: str, assignment: str, notebook: str, cells: list[Cell]) -> list[Finding]:
    """Static findings of one source notebook (its cells as :func:`~cells.code_cells` gives)."""
    return NotebookScan(course, assignment, notebook, cells).run()
