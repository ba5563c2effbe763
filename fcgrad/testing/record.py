"""Every array a user's file assigns while one call runs: its file, line, statement and what it read.

``recording(where)`` traces (``sys.settrace``) the frames whose code lives in ``where``: a folder (the file and
its sibling modules, nothing of NumPy's or fcgrad's) or one file (the file that defines a layer's backward,
for ``assert_backward_matches``). For each assignment statement (``=``, ``+=``, an annotated one, a ``for``
target) it keeps, after the statement ran, the value of every target that holds numbers (an array, or each
array of a list or tuple); before it ran, the values of the plain names, attributes and subscripts the
statement reads, the array a method is called on included (``residual_z`` of ``residual_z.sum(axis=1)``;
never a call: reading them has no side effect). The arguments a function was called with
are kept too, at its ``def`` line, and what a function returns, at its ``return`` (``inner`` when a statement of the
recorded files called it). Each loop iteration is its own record, in the order they ran.

It sits with the pytest helpers, below the audits, so that both may use it: the audit of a network file
(``fcgrad audit --code``) records a folder the same way.
"""

import ast
import contextlib
import linecache
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Arrays of fewer entries tell nothing by value (a counter): not kept, but for NumPy's float scalars, kept only to
# follow where a value came from (``grad_b = np.sum(residual_z)``).
SMALLEST_KEPT = 2
# A statement run more often than this in one traced call is not kept past it (a long loop over samples).
MOST_RECORDS = 20_000


@dataclass
class Record:
    seq: int  # the order it ran in
    file: str
    line: int
    statement: str  # the statement's source, one line
    target: str  # what was assigned, as written (``delta``, ``self.dW``, ``nabla_w[-1]``)
    value: np.ndarray  # float64 copy, the file's own shape
    frame: int  # one id per function call
    function: str
    reads: list[tuple[str, np.ndarray]] = field(default_factory=list)  # what the statement read, before it ran
    inner: bool = False  # a value returned to a statement of the file (a helper's), not to the caller of the step


def _numbers(value) -> list[tuple[str, np.ndarray]]:
    """('', array) for an array, ('[i]', array) for each array of a list or tuple; nothing else."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and value.size >= SMALLEST_KEPT:
        return [("", np.array(value, dtype=np.float64))]
    scalar = isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size == 1
    if isinstance(value, np.floating) or scalar:
        return [("", np.array(value, dtype=np.float64))]  # a NumPy scalar: kept to follow where a value came from
    if isinstance(value, (list, tuple)) and 0 < len(value) <= 64:
        out = []
        for i, v in enumerate(value):
            if isinstance(v, np.ndarray) and v.dtype.kind in "fiu" and v.size >= SMALLEST_KEPT:
                out.append((f"[{i}]", np.array(v, dtype=np.float64)))
        return out
    return []


# What an index may be made of to be read again safely: names, numbers, arithmetic, slices (``w[-l + 1]``, ``a[:, 0]``).
_INDEX_NODES = (
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.UnaryOp,
    ast.BinOp,
    ast.Slice,
    ast.Tuple,
    ast.operator,
    ast.unaryop,
)


def _readable(node) -> bool:
    """A name, attribute or subscript chain without calls: reading it again has no side effect."""
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _readable(node.value)
    if isinstance(node, ast.Subscript):
        simple = all(isinstance(n, _INDEX_NODES) or _pure_call(n) for n in ast.walk(node.slice))
        return simple and _readable(node.value)
    return False


# Builtins an index may call and still be read again safely: the courses' ``parameters["W" + str(l + 1)]``.
_PURE_CALLS = ("str", "int", "len", "abs", "min", "max")


def _pure_call(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _PURE_CALLS


@dataclass
class _Statement:
    line: int
    text: str
    targets: list  # compiled expressions with their source
    reads: list


def _expr(node) -> tuple[str, object]:
    source = ast.unparse(node)
    return source, compile(ast.Expression(body=node), "<fcgrad-trace>", "eval")


def _loads(value_node) -> list:
    """The outermost readable expressions a statement's right-hand side reads."""
    found, seen = [], set()

    def visit(node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # a method of an array (``residual_z.sum(axis=1)``): the array is what it reads, not the method
            for child in (node.func.value, *node.args, *(k.value for k in node.keywords)):
                visit(child)
            return
        if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)) and _readable(node):
            if isinstance(getattr(node, "ctx", None), ast.Load):
                text = ast.unparse(node)
                if text not in seen:
                    seen.add(text)
                    found.append(_expr(node))
                return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(value_node)
    return found


def _target_exprs(target) -> list:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [e for t in target.elts for e in _target_exprs(t)]
    if isinstance(target, ast.Starred):
        return _target_exprs(target.value)
    if _readable(target):
        return [_expr(_as_load(target))]
    if isinstance(target, ast.Subscript) and _readable(target.value):  # ``dz[z <= 0] = 0``: the array it changed
        return [_expr(_as_load(target.value))]
    return []


def _as_load(node):
    return ast.parse(ast.unparse(node), mode="eval").body  # the same expression, as a load


def _item_reads(targets) -> list:
    """What an item assignment reads besides its value: the array it changes, as it was, and its index."""
    out = []
    for t in targets:
        if isinstance(t, ast.Subscript):
            out += _loads(_as_load(t))
    return out


def statements(path: str) -> dict[int, _Statement]:
    """Each assignment statement of a file by its first line."""
    source = Path(path).read_text(encoding="utf-8")
    lines = source.splitlines()
    out = {}
    for node in ast.walk(ast.parse(source)):
        extra = []
        if isinstance(node, ast.Assign):
            targets, value = [e for t in node.targets for e in _target_exprs(t)], node.value
            extra = _item_reads(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets, value = _target_exprs(node.target), node.value
            if isinstance(node, ast.AugAssign):
                value = ast.BinOp(left=ast.parse(ast.unparse(node.target), mode="eval").body, op=node.op, right=value)
        elif isinstance(node, ast.For):
            targets, value = _target_exprs(node.target), node.iter
        else:
            continue
        if not targets or value is None:
            continue
        text = " ".join(part.strip() for part in lines[node.lineno - 1 : getattr(node, "end_lineno", node.lineno)])
        if isinstance(node, ast.For):
            text = lines[node.lineno - 1].strip()
        reads = _loads(value)
        reads += [e for e in extra if e[0] not in {r[0] for r in reads}]
        out[node.lineno] = _Statement(node.lineno, text, targets, reads)
    return out


class Recorder:
    def __init__(self, folder: str):
        self.folder = str(Path(folder).resolve())  # a folder, or one file
        self.records: list[Record] = []
        self._files: dict[str, dict[int, _Statement] | None] = {}
        self._pending: dict[int, tuple[_Statement, str, list]] = {}
        self._frames = 0
        self._ids: dict[int, int] = {}
        self._return_reads: dict[int, list] = {}
        self._return_tables: dict[str, dict] = {}

    def _returns(self, filename: str) -> dict:
        """Each ``return`` statement's line -> what it reads."""
        if filename not in self._return_tables:
            table = {}
            if self._statements(filename) is not None:
                with contextlib.suppress(OSError, SyntaxError, ValueError):
                    tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
                    for node in ast.walk(tree):
                        if isinstance(node, ast.Return) and node.value is not None:
                            table[node.lineno] = _loads(node.value)
            self._return_tables[filename] = table
        return self._return_tables[filename]

    def _statements(self, filename: str):
        if filename not in self._files:
            keep = None
            try:
                resolved = Path(filename).resolve()
                inside = str(resolved.parent) == self.folder or self.folder in {str(p) for p in resolved.parents}
                if inside or str(resolved) == self.folder:  # a file of the folder, or the one file asked for
                    keep = statements(str(resolved))
            except (OSError, SyntaxError, ValueError):
                keep = None
            self._files[filename] = keep
        return self._files[filename]

    def _eval(self, code, frame):
        with contextlib.suppress(Exception):
            return eval(code, frame.f_globals, frame.f_locals)  # noqa: S307  a name or attribute chain, no call
        return None

    def _finish(self, frame) -> None:
        pending = self._pending.pop(id(frame), None)
        if pending is None or len(self.records) >= MOST_RECORDS:
            return
        stmt, filename, reads = pending
        for text, code in stmt.targets:
            for suffix, value in _numbers(self._eval(code, frame)):
                self.records.append(
                    Record(
                        len(self.records),
                        filename,
                        stmt.line,
                        stmt.text,
                        text + suffix,
                        value,
                        self._ids[id(frame)],
                        frame.f_code.co_name,
                        reads,
                    )
                )

    def _local(self, frame, event, arg):
        if event in ("line", "return"):
            self._finish(frame)
        comprehension = frame.f_code.co_name.startswith("<")  # a list comprehension's list: its statement's value
        if event == "return" and not comprehension and len(self.records) < MOST_RECORDS:  # what a function returns
            line = frame.f_lineno
            text = linecache.getline(frame.f_code.co_filename, line).strip()
            reads = self._return_reads.pop(id(frame), [])
            for suffix, value in _numbers(arg):
                self.records.append(
                    Record(
                        len(self.records),
                        frame.f_code.co_filename,
                        line,
                        text,
                        "return" + suffix,
                        value,
                        self._ids[id(frame)],
                        frame.f_code.co_name,
                        reads,
                        id(frame.f_back) in self._ids,
                    )
                )
        if event == "line":
            table = self._statements(frame.f_code.co_filename)
            stmt = table.get(frame.f_lineno) if table else None
            if stmt is not None:
                reads = []
                for text, code in stmt.reads:
                    reads.extend((text + s, v) for s, v in _numbers(self._eval(code, frame)))
                self._pending[id(frame)] = (stmt, frame.f_code.co_filename, reads)
            returned = self._returns(frame.f_code.co_filename).get(frame.f_lineno)
            if returned is not None:
                reads = []
                for text, code in returned:
                    reads.extend((text + s, v) for s, v in _numbers(self._eval(code, frame)))
                self._return_reads[id(frame)] = reads
        return self._local

    def _global(self, frame, event, arg):
        if event != "call" or self._statements(frame.f_code.co_filename) is None:
            return None
        self._frames += 1
        self._ids[id(frame)] = self._frames
        code = frame.f_code
        line = code.co_firstlineno
        text = linecache.getline(code.co_filename, line).strip()
        for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
            for suffix, value in _numbers(frame.f_locals.get(name)):
                self.records.append(
                    Record(
                        len(self.records),
                        code.co_filename,
                        line,
                        text,
                        name + suffix,
                        value,
                        self._frames,
                        code.co_name,
                    )
                )
        return self._local


@contextlib.contextmanager
def recording(folder: str):
    """A ``Recorder`` of every assignment in the files of ``folder`` (or in the one file it names) while it runs."""
    rec = Recorder(folder)
    before = sys.gettrace()
    sys.settrace(rec._global)
    try:
        yield rec
    finally:
        sys.settrace(before)
