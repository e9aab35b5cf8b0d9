"""VNN-LIB 1.0 reading and writing.

A VNN-LIB file declares input variables ``X_0 .. X_{n-1}`` and output variables
``Y_0 .. Y_{m-1}`` and asserts constraints whose conjunction describes the *unsafe* set:
the property is violated by an input satisfying the input constraints whose output
satisfies the output constraints.

Reading: the assertions are converted to disjunctive normal form. Each disjunct must
consist of bounds on single input variables (an input *box*) and linear inequalities over
the outputs (``A y <= b``). Disjuncts with identical boxes are grouped into one
:class:`~nnresilience.spec.property.Case`, whose output condition is the disjunction of
their output conjunctions (ACAS Xu property 6 gives two cases; an MNIST robustness file one
case with nine terms). A disjunct without output constraints is "always unsafe" (a
conjunction with no rows).

Deliberate choices, all documented in ``docs/formats.md``:

- ``<`` and ``>`` are read as ``<=`` and ``>=`` (the closure). For the unsafe set that is
  conservative for "holds"; a counterexample on the boundary of a strict constraint would be
  reported, so ``Property.meta['strict_relaxed']`` is set when this happened.
- Input constraints that are not bounds on one ``X`` variable (e.g. ``X_0 + X_1 <= 1``) and
  constraints mixing ``X`` and ``Y`` are refused with :class:`SpecParseError`.
- A disjunct whose input box is empty can never be violated and is dropped.

Every error is a :class:`SpecParseError` carrying path, line and column.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from pathlib import Path

import numpy as np

from nnresilience.errors import ShapeMismatchError, SpecParseError
from nnresilience.spec.condition import Conjunction, OutputCondition
from nnresilience.spec.property import Case, Property
from nnresilience.spec.region import InputRegion

_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")
_VAR = re.compile(r"([XY])_(\d+)$")
_MAX_DISJUNCTS = 100_000
_IGNORED_COMMANDS = ("set-logic", "set-info", "set-option", "check-sat", "get-model", "exit")


class _Tok(str):
    """An atom with its character offset in the source."""

    pos: int

    def __new__(cls, text: str, pos: int) -> _Tok:
        obj = super().__new__(cls, text)
        obj.pos = pos
        return obj


class _List(list):
    """A parenthesised list with the offset of its opening parenthesis."""

    pos: int = 0


class _Source:
    def __init__(self, text: str, path: str) -> None:
        self.text, self.path = text, path
        self._starts: list[int] | None = None

    def where(self, pos: int) -> tuple[int, int]:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect_right(self._starts, pos)
        return line, pos - self._starts[line - 1] + 1

    def error(self, msg: str, pos: int) -> SpecParseError:
        line, col = self.where(pos)
        return SpecParseError(msg, self.path, line, col)


def _parse(src: _Source) -> list[_List]:
    """Tokenise and build the list of top-level s-expressions."""
    stack: list[_List] = []
    top: list[_List] = []
    for m in _TOKEN.finditer(src.text):
        t = m.group()
        if t[0] == ";":
            continue
        if t == "(":
            lst = _List()
            lst.pos = m.start()
            stack.append(lst)
        elif t == ")":
            if not stack:
                raise src.error("unbalanced ')'", m.start())
            done = stack.pop()
            (stack[-1] if stack else top).append(done)
        else:
            if not stack:
                raise src.error(f"unexpected token {t!r} outside parentheses", m.start())
            stack[-1].append(_Tok(t, m.start()))
    if stack:
        raise src.error("unbalanced '(': missing ')' before the end of the file", stack[-1].pos)
    return top


# A linear expression: {variable key: coefficient} and a constant. Keys are ("X", i)/("Y", j).
_Lin = tuple[dict, float]


def _pos(node: object) -> int:
    return getattr(node, "pos", 0)


class _Reader:
    def __init__(self, src: _Source) -> None:
        self.src = src
        self.decl: dict[str, dict[int, int]] = {"X": {}, "Y": {}}
        self.strict = False

    def err(self, msg: str, node: object) -> SpecParseError:
        return self.src.error(msg, _pos(node))

    def number(self, tok: _Tok) -> float | None:
        try:
            v = float(tok)
        except ValueError:
            return None
        if not np.isfinite(v):
            raise self.err(f"non-finite number {tok!r}", tok)
        return v

    def term(self, node: object) -> _Lin:
        if isinstance(node, _Tok):
            v = self.number(node)
            if v is not None:
                return {}, v
            m = _VAR.match(node)
            if m is None:
                raise self.err(f"unknown symbol {str(node)!r} (expected a number, X_i or Y_j)",
                               node)
            key = (m.group(1), int(m.group(2)))
            if key[1] not in self.decl[key[0]]:
                raise self.err(f"variable {str(node)} is used but not declared", node)
            return {key: 1.0}, 0.0
        if not node or not isinstance(node[0], _Tok):
            raise self.err("expected an arithmetic term", node)
        op, args = node[0], [self.term(a) for a in node[1:]]
        if not args:
            raise self.err(f"{op!r} needs arguments", node)
        if op == "+":
            return _add(args, [1.0] * len(args))
        if op == "-":
            if len(args) == 1:
                return _add(args, [-1.0])
            return _add(args, [1.0] + [-1.0] * (len(args) - 1))
        if op == "*":
            coef, lin = 1.0, None
            for c, k in args:
                if c:
                    if lin is not None:
                        raise self.err("non-linear product of variables", node)
                    lin = (c, k)
                else:
                    coef *= k
            if lin is None:
                return {}, coef
            return {v: coef * a for v, a in lin[0].items()}, coef * lin[1]
        raise self.err(f"unsupported arithmetic operator {str(op)!r}", node)

    def formula(self, node: object) -> list[list]:
        """DNF of a formula: a list of conjunctions, each a list of atoms
        ``(kind, data, node)`` with kind 'x' (bound), 'y' (output row)."""
        if not isinstance(node, _List) or not node or not isinstance(node[0], _Tok):
            raise self.err("expected a constraint such as (<= X_0 1.0)", node)
        op = node[0]
        if op == "and":
            res: list[list] = [[]]
            for child in node[1:]:
                sub = self.formula(child)
                if len(res) * len(sub) > _MAX_DISJUNCTS:
                    raise self.err(f"the DNF has more than {_MAX_DISJUNCTS} disjuncts", node)
                res = [a + b for a in res for b in sub]
            return res
        if op == "or":
            out: list[list] = []
            for child in node[1:]:
                out += self.formula(child)
            return out
        if op in ("<=", ">=", "<", ">", "="):
            if len(node) < 3:
                raise self.err(f"{str(op)!r} needs two operands", node)
            if op in ("<", ">"):
                self.strict = True
            terms = [self.term(a) for a in node[1:]]
            atoms: list = []
            for left, right in itertools.pairwise(terms):
                if op in ("<=", "<", "="):
                    atoms += self.atom(left, right, node)
                if op in (">=", ">", "="):
                    atoms += self.atom(right, left, node)
            if any(a is False for a in atoms):
                return []
            return [[a for a in atoms if a is not True]]
        raise self.err(f"unsupported logical operator {str(op)!r}", node)

    def atom(self, left: _Lin, right: _Lin, node: object) -> list:
        """``left <= right`` as an atom, or True/False when no variable is involved."""
        coefs = dict(left[0])
        for v, a in right[0].items():
            coefs[v] = coefs.get(v, 0.0) - a
        coefs = {v: a for v, a in coefs.items() if a != 0.0}
        rhs = right[1] - left[1]
        if not coefs:
            return [bool(rhs >= 0.0)]
        kinds = {v[0] for v in coefs}
        if kinds == {"X"}:
            if len(coefs) != 1:
                raise self.err("input constraint is not a bound on a single X variable "
                               "(only input boxes are supported)", node)
            (v, a), = coefs.items()
            # a x <= rhs  ->  x <= rhs/a (a > 0) or x >= rhs/a (a < 0)
            return [("x", (v[1], a > 0, rhs / a), node)]
        if kinds == {"Y"}:
            return [("y", (coefs, rhs), node)]
        raise self.err("constraint mixes input (X) and output (Y) variables", node)

    def declare(self, node: _List) -> None:
        if len(node) != 3 or not isinstance(node[1], _Tok):
            raise self.err("expected (declare-const NAME Real)", node)
        if node[2] != "Real":
            raise self.err(f"variable {str(node[1])} must be of sort Real", node[2])
        m = _VAR.match(node[1])
        if m is None:
            raise self.err(f"variable name {str(node[1])!r} must be X_i or Y_j", node[1])
        table = self.decl[m.group(1)]
        idx = int(m.group(2))
        if idx in table:
            raise self.err(f"variable {str(node[1])} declared twice", node[1])
        table[idx] = node.pos


def _add(args: list[_Lin], signs: list[float]) -> _Lin:
    coefs: dict = {}
    const = 0.0
    for (c, k), s in zip(args, signs, strict=True):
        for v, a in c.items():
            coefs[v] = coefs.get(v, 0.0) + s * a
        const += s * k
    return coefs, const


def read_vnnlib(path: str | Path, n_inputs: int | None = None, n_outputs: int | None = None,
                text: str | None = None) -> Property:
    """Read a VNN-LIB 1.0 file into a :class:`Property` (see the module docstring).

    ``n_inputs``/``n_outputs``, when given, must equal the declared variable counts
    (:class:`ShapeMismatchError` otherwise). ``text`` parses a string instead of the file
    (``path`` then only names it in messages).
    """
    p = str(path)
    if text is None:
        try:
            text = Path(path).read_text()
        except FileNotFoundError as exc:
            raise SpecParseError("no such property file", p) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecParseError(f"cannot read property file ({exc})", p) from exc
    src = _Source(text, p)
    rd = _Reader(src)
    asserts: list[_List] = []
    for cmd in _parse(src):
        head = cmd[0] if cmd and isinstance(cmd[0], _Tok) else None
        if head == "declare-const":
            rd.declare(cmd)
        elif head == "assert":
            if len(cmd) != 2:
                raise rd.err("expected (assert FORMULA)", cmd)
            asserts.append(cmd)
        elif head in _IGNORED_COMMANDS:
            continue
        else:
            raise rd.err(f"unsupported command {str(head) if head else '(...)'!r}", cmd)

    for kind in ("X", "Y"):
        idx = sorted(rd.decl[kind])
        if idx != list(range(len(idx))):
            missing = next(i for i in range(len(idx) + 1) if i not in rd.decl[kind])
            raise SpecParseError(f"{kind}_{missing} is not declared (variables must be "
                                 f"{kind}_0 .. {kind}_{len(idx) - 1} without gaps)", p)
    nx, ny = len(rd.decl["X"]), len(rd.decl["Y"])
    if nx == 0:
        raise SpecParseError("no input variables X_i declared", p)
    if n_inputs is not None and n_inputs != nx:
        raise ShapeMismatchError(f"{p}: declares {nx} input variables, the network has "
                                 f"{n_inputs} inputs")
    if n_outputs is not None and n_outputs != ny:
        raise ShapeMismatchError(f"{p}: declares {ny} output variables, the network has "
                                 f"{n_outputs} outputs")

    # Conjunction over asserts: single-disjunct asserts are pooled into a common part so
    # that only real disjunctions are multiplied out.
    common: list = []
    multi: list[list[list]] = []
    for a in asserts:
        dnf = rd.formula(a[1])
        if len(dnf) == 1:
            common += dnf[0]
        else:
            multi.append(dnf)
    total = int(np.prod([len(d) for d in multi])) if multi else 1
    if total > _MAX_DISJUNCTS:
        raise SpecParseError(f"the assertions expand to {total} disjuncts (limit "
                             f"{_MAX_DISJUNCTS})", p)

    lo0, hi0 = np.full(nx, -np.inf), np.full(nx, np.inf)
    rows0 = _apply(common, lo0, hi0)
    groups: dict[bytes, tuple[np.ndarray, np.ndarray, list[Conjunction]]] = {}
    for combo in itertools.product(*multi):
        lo, hi = lo0.copy(), hi0.copy()
        rows = list(rows0)
        for conj in combo:
            rows += _apply(conj, lo, hi)
        if np.any(lo > hi):
            continue   # empty input box: this disjunct cannot be violated
        missing = np.flatnonzero(~np.isfinite(lo) | ~np.isfinite(hi))
        if missing.size:
            i = int(missing[0])
            side = "lower" if not np.isfinite(lo[i]) else "upper"
            line, col = src.where(rd.decl["X"][i])
            raise SpecParseError(f"input X_{i} has no {side} bound (inputs must lie in a box)",
                                 p, line, col)
        A = np.zeros((len(rows), ny))
        b = np.zeros(len(rows))
        for r, (coefs, rhs) in enumerate(rows):
            for (_, j), a in coefs.items():
                A[r, j] += a
            b[r] = rhs
        key = lo.tobytes() + hi.tobytes()
        if key not in groups:
            groups[key] = (lo, hi, [])
        groups[key][2].append(Conjunction(A, b))
    if not groups:
        raise SpecParseError("the input constraints are unsatisfiable (every input box is "
                             "empty)", p)
    cases = tuple(Case(InputRegion.box(lo, hi), OutputCondition(tuple(terms), ny))
                  for lo, hi, terms in groups.values())
    meta: dict = {"strict_relaxed": rd.strict}
    m = re.search(r"label:\s*(\d+)", text[:2000])
    if m:
        meta["label"] = int(m.group(1))
    return Property(cases, name=Path(p).stem, source=p, meta=meta)


def _apply(conj: list, lo: np.ndarray, hi: np.ndarray) -> list:
    """Tighten ``lo``/``hi`` in place with the bound atoms; return the output rows."""
    rows = []
    for kind, data, _node in conj:
        if kind == "x":
            i, upper, v = data
            if upper:
                if v < hi[i]:
                    hi[i] = v
            elif v > lo[i]:
                lo[i] = v
        else:
            rows.append(data)
    return rows


# -------------------------------------------------------------------- writer
def _num(v: float) -> str:
    v = float(v)
    return repr(v) if v >= 0 else f"(- {repr(-v)})"


def _row(a: np.ndarray, b: float) -> str:
    nz = np.flatnonzero(a)
    if nz.size == 0:
        return f"(<= 0.0 {_num(b)})"
    parts = [f"(* {_num(a[j])} Y_{j})" for j in nz]
    lhs = parts[0] if len(parts) == 1 else f"(+ {' '.join(parts)})"
    return f"(<= {lhs} {_num(b)})"


def _condition(cond: OutputCondition) -> str | None:
    """The condition as one formula, or None when it is always true."""
    if not cond.terms:
        raise ValueError("cannot write an output condition with no terms (never unsafe)")
    terms = []
    for t in cond.terms:
        if t.A.shape[0] == 0:
            return None
        terms.append("(and " + " ".join(_row(t.A[r], t.b[r]) for r in range(t.A.shape[0]))
                     + ")")
    return terms[0] if len(terms) == 1 else "(or\n    " + "\n    ".join(terms) + ")"


def write_vnnlib(prop: Property, path: str | Path) -> None:
    """Write ``prop`` as a VNN-LIB 1.0 file that :func:`read_vnnlib` reads back to the same
    arrays (numbers are written with ``repr``, which round-trips float64 exactly).

    L1/L2 balls cannot be expressed in VNN-LIB boxes: such regions raise ``ValueError``.
    """
    if any(c.region.norm in ("l1", "l2") for c in prop.cases):
        raise ValueError("VNN-LIB cannot express an L1 or L2 ball; only boxes")
    nx, ny = prop.n_inputs, prop.n_outputs
    out = [f"; {prop.name} (written by nnresilience)"]
    if "label" in prop.meta:
        out.append(f"; property with label: {int(prop.meta['label'])}.")
    out += [f"(declare-const X_{i} Real)" for i in range(nx)]
    out += [f"(declare-const Y_{j} Real)" for j in range(ny)]
    if len(prop.cases) == 1:
        r = prop.cases[0].region
        for i in range(nx):
            out.append(f"(assert (<= X_{i} {_num(r.hi[i])}))")
            out.append(f"(assert (>= X_{i} {_num(r.lo[i])}))")
        cond = _condition(prop.cases[0].unsafe)
        if cond is not None:
            out.append(f"(assert {cond})")
    else:
        parts = []
        for c in prop.cases:
            r = c.region
            box = " ".join(f"(<= X_{i} {_num(r.hi[i])}) (>= X_{i} {_num(r.lo[i])})"
                           for i in range(nx))
            cond = _condition(c.unsafe)
            parts.append(f"(and {box}" + (f" {cond})" if cond is not None else ")"))
        out.append("(assert (or\n  " + "\n  ".join(parts) + "))")
    Path(path).write_text("\n".join(out) + "\n")


__all__ = ["read_vnnlib", "write_vnnlib"]
