"""Declarative torch-key -> NNX-path rules: load a torch state_dict into flat NNX params and export it back.

A model family declares a `RuleTable`: an ordered list of `Rule(torch_regex, nnx_path_template, transform)`.
`{name}` in the regex captures an integer index (`blocks\\.{i}\\.attn` matches `blocks.3.attn`); the same
`{name}` in the NNX template becomes that int (`("blocks", "{i}", "attn")` -> `("blocks", 3, "attn")`). The first
rule whose regex fully matches a (prefix-stripped) torch key wins.

    table = RuleTable("toy", [
        Rule(r"blocks\\.{i}\\.attn\\.qkv\\.weight", ("blocks", "{i}", "attn", "qkv", "kernel"), transpose),
        Rule(r"blocks\\.{i}\\.norm\\.num_batches_tracked", ("blocks", "{i}", "norm", "count"),
             astype(np.int32, np.int64)),
        Rule(r"gin\\.{i}\\.eps", None, ignore(expect=np.zeros(1, np.float32))),
    ], strip_prefixes=("module.", "_orig_mod."))
    params, report = load_into(target_flat, torch_sd, table)   # target_flat: {path: ShapeDtypeStruct}
    torch_sd_again = export(params, table)                      # exact inverse

Every transform has an inverse, so `export(load_into(...))` reproduces the torch tensors bit for bit. Rules can
also split one torch tensor into several NNX params (`split`) or merge several torch tensors into one (`merge`).
"""
from __future__ import annotations

import collections
import dataclasses
import difflib
import re
from typing import Any, Callable, Mapping, Sequence

import numpy as np

Path = tuple  # NNX path: tuple of str / int parts
PathTemplate = tuple  # like Path, parts may contain "{name}" placeholders


class BridgeMismatchError(ValueError):
    """Torch state_dict and NNX model do not line up; the message is a table of every problem."""

    def __init__(self, message: str, report: "LoadReport | None" = None):
        super().__init__(message)
        self.report = report


# --------------------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Transform:
    """A torch -> NNX array transform and its inverse.

    kind 'one': forward(x, nnx_shape) -> y and inverse(y, torch_shape) -> x.
    kind 'split': forward(x, [nnx_shapes]) -> [y...] and inverse([y...], torch_shape) -> x.
    kind 'merge': forward([x...], nnx_shape) -> y and inverse(y, [torch_shapes]) -> [x...].
    kind 'ignore': the torch key is consumed on purpose; `check(x)` returns an error text or None; `emit` (if an
    array) is written back on export.
    `nnx_shape` / `torch_shape` are the shapes on the other side when known (None otherwise); transforms that
    cannot be inverted from the array alone use them.
    """

    name: str
    forward: Callable[..., Any]
    inverse: Callable[..., Any]
    kind: str = "one"
    check: Callable[[np.ndarray], str | None] | None = None
    emit: np.ndarray | None = None


def _need(shape: Any, what: str, transform: str) -> tuple:
    if shape is None:
        raise ValueError(f"{transform} needs the {what} shape; give it explicitly or pass torch_shapes to export")
    return tuple(shape)


def _check_ndim(x: np.ndarray, ndim: int, name: str) -> np.ndarray:
    if x.ndim != ndim:
        raise ValueError(f"{name} expects a {ndim}-d array, got shape {tuple(x.shape)}")
    return x


identity = Transform("identity", lambda x, _s=None: x, lambda y, _s=None: y)


def permute(axes: Sequence[int], name: str | None = None) -> Transform:
    """Transpose torch axes into NNX order (`y = x.transpose(axes)`); the inverse undoes it."""
    axes = tuple(axes)
    back = tuple(int(a) for a in np.argsort(axes))
    label = name or f"permute{axes}"
    return Transform(label,
                     lambda x, _s=None: np.transpose(_check_ndim(x, len(axes), label), axes),
                     lambda y, _s=None: np.transpose(_check_ndim(y, len(axes), label), back))


transpose = permute((1, 0), "transpose")            # nn.Linear [out, in] -> kernel [in, out]
conv1d = permute((2, 1, 0), "conv1d")               # [O, I, k] -> [k, I, O]
conv2d = permute((2, 3, 1, 0), "conv2d")            # [O, I, kh, kw] -> [kh, kw, I, O]
conv3d = permute((2, 3, 4, 1, 0), "conv3d")         # [O, I, kt, kh, kw] -> [kt, kh, kw, I, O]


def flatten_patch(patch_shape: Sequence[int] | None = None) -> Transform:
    """Conv weight [O, C, k...] -> dense kernel [C*prod(k), O], flattened in torch's (c, k...) order.

    The inverse needs the (C, k...) patch shape: given here, or taken from the torch shape on export.
    """
    def forward(x: np.ndarray, _s: Any = None) -> np.ndarray:
        if x.ndim < 2:
            raise ValueError(f"flatten_patch expects a conv weight [O, C, k...], got shape {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).T

    def inverse(y: np.ndarray, torch_shape: Any = None) -> np.ndarray:
        patch = tuple(patch_shape) if patch_shape is not None else _need(torch_shape, "torch", "flatten_patch")[1:]
        return y.T.reshape((y.shape[1],) + patch)

    return Transform("flatten_patch", forward, inverse)


def reshape(nnx_shape: Sequence[int] | None = None, torch_shape: Sequence[int] | None = None) -> Transform:
    """Reshape (C order). Shapes left as None come from the expected NNX shape on load / the torch shape on export."""
    def forward(x: np.ndarray, target: Any = None) -> np.ndarray:
        return x.reshape(tuple(nnx_shape) if nnx_shape is not None else _need(target, "NNX", "reshape"))

    def inverse(y: np.ndarray, shape: Any = None) -> np.ndarray:
        return y.reshape(tuple(torch_shape) if torch_shape is not None else _need(shape, "torch", "reshape"))

    return Transform(f"reshape{tuple(nnx_shape) if nnx_shape is not None else ''}", forward, inverse)


def squeeze(axis: int | Sequence[int]) -> Transform:
    """Drop size-1 torch axes (e.g. a [1, 1, D] token -> [D]); the inverse re-inserts them."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)

    def forward(x: np.ndarray, _s: Any = None) -> np.ndarray:
        if any(x.shape[a] != 1 for a in axes):
            raise ValueError(f"squeeze{axes} expects size-1 axes, got shape {tuple(x.shape)}")
        return np.squeeze(x, axes)

    return Transform(f"squeeze{axes}", forward, lambda y, _s=None: np.expand_dims(y, axes))


def astype(nnx_dtype: Any, torch_dtype: Any) -> Transform:
    """Cast to `nnx_dtype` on load and back to `torch_dtype` on export (e.g. int64 num_batches_tracked <-> int32).

    Refuses casts that change values (e.g. an int64 count beyond the int32 range).
    """
    to, back = np.dtype(nnx_dtype), np.dtype(torch_dtype)

    def cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        y = np.asarray(x).astype(dtype)
        if np.asarray(x).dtype.kind in "iub" and not np.array_equal(y.astype(np.asarray(x).dtype), x):
            raise ValueError(f"cast {np.asarray(x).dtype} -> {dtype} changes values (out of range)")
        return y

    return Transform(f"astype({to}<->{back})", lambda x, _s=None: cast(x, to), lambda y, _s=None: cast(y, back))


def chain(*transforms: Transform) -> Transform:
    """Apply transforms left to right on load, right to left on export.

    Only the first transform of the chain sees the torch shape on export and only the last sees the NNX shape
    on load, so shape-dependent transforms elsewhere in a chain need explicit shapes.
    """
    last = len(transforms) - 1

    def forward(x: np.ndarray, nnx_shape: Any = None) -> np.ndarray:
        for i, t in enumerate(transforms):
            x = t.forward(x, nnx_shape if i == last else None)
        return x

    def inverse(y: np.ndarray, torch_shape: Any = None) -> np.ndarray:
        for i, t in reversed(list(enumerate(transforms))):
            y = t.inverse(y, torch_shape if i == 0 else None)
        return y

    return Transform("+".join(t.name for t in transforms), forward, inverse)


def split(parts: int, axis: int = 0, each: Transform = identity) -> Transform:
    """One torch tensor -> `parts` equal NNX params along `axis` (then `each`), e.g. fused qkv -> q, k, v."""
    def forward(x: np.ndarray, nnx_shapes: Any = None) -> list:
        if x.shape[axis] % parts:
            raise ValueError(f"split({parts}) along axis {axis} does not divide shape {tuple(x.shape)}")
        shapes = nnx_shapes or [None] * parts
        return [each.forward(p, s) for p, s in zip(np.split(x, parts, axis=axis), shapes)]

    def inverse(ys: Sequence[np.ndarray], torch_shape: Any = None) -> np.ndarray:
        part_shape = None
        if torch_shape is not None:
            part_shape = list(torch_shape)
            part_shape[axis] //= parts
        return np.concatenate([each.inverse(y, part_shape) for y in ys], axis=axis)

    return Transform(f"split{parts}@{axis}", forward, inverse, kind="split")


def merge(axis: int = 0, each: Transform = identity, sizes: Sequence[int] | None = None) -> Transform:
    """Several torch tensors (after `each`) concatenated along NNX `axis`, e.g. q/k/v projections -> fused qkv.

    The inverse splits into equal parts unless `sizes` (NNX sizes along `axis`) or the torch shapes say otherwise.
    """
    def forward(xs: Sequence[np.ndarray], _s: Any = None) -> np.ndarray:
        return np.concatenate([each.forward(x) for x in xs], axis=axis)

    def inverse(y: np.ndarray, torch_shapes: Any = None) -> list:
        n = len(torch_shapes) if torch_shapes else len(sizes or ())
        if sizes is not None:
            cuts = np.cumsum(sizes)[:-1]
        elif torch_shapes and all(s is not None for s in torch_shapes):
            probe = [each.forward(np.broadcast_to(np.zeros((), y.dtype), s)).shape[axis] for s in torch_shapes]
            cuts = np.cumsum(probe)[:-1]
        else:
            cuts = n
        shapes = torch_shapes or [None] * n
        return [each.inverse(p, s) for p, s in zip(np.split(y, cuts, axis=axis), shapes)]

    return Transform(f"merge@{axis}", forward, inverse, kind="merge")


def ignore(expect: Any = None, check: Callable[[np.ndarray], bool] | None = None, why: str = "") -> Transform:
    """Consume a torch key on purpose (constant buffers). `expect` / `check` verify the value; an array `expect`
    is also written back on export (once per index of the module it sits in)."""
    def verify(x: np.ndarray) -> str | None:
        if expect is not None:
            want = np.asarray(expect)
            same_shape = want.ndim == 0 or want.shape == x.shape
            if not same_shape or not np.array_equal(np.broadcast_to(want, x.shape), x):
                return f"expected {want.tolist()} but found {np.asarray(x).tolist()}{' (' + why + ')' if why else ''}"
        if check is not None and not check(x):
            return f"value check failed{' (' + why + ')' if why else ''}: {np.asarray(x).ravel()[:8].tolist()}"
        return None

    emit = np.asarray(expect) if isinstance(expect, np.ndarray) else None
    return Transform("ignore", identity.forward, identity.inverse, kind="ignore", check=verify, emit=emit)


# --------------------------------------------------------------------------------------------------------------
# rules and tables
# --------------------------------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def _compile(pattern: str) -> re.Pattern:
    seen: set[str] = set()

    def group(m: re.Match) -> str:
        name = m.group(1)
        if name in seen:
            return f"(?P={name})"
        seen.add(name)
        return rf"(?P<{name}>\d+)"

    return re.compile(_PLACEHOLDER.sub(group, pattern))


def _regex_to_template(pattern: str) -> str | None:
    """`blocks\\.{i}\\.w` -> `blocks.{i}.w`; None if the regex has real alternatives (needs torch_template)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and not pattern[i + 1].isalnum():
            out.append(pattern[i + 1])
            i += 2
            continue
        if ch == "{":
            m = _PLACEHOLDER.match(pattern, i)
            if not m:
                return None
            out.append(m.group(0))
            i = m.end()
            continue
        if ch in "^$*+?()[]|\\":
            return None
        out.append(ch)  # an unescaped '.' is taken literally
        i += 1
    return "".join(out)


def _placeholders(item: Any) -> set[str]:
    if isinstance(item, str):
        return set(_PLACEHOLDER.findall(item))
    if isinstance(item, (tuple, list)):
        return set().union(*(_placeholders(p) for p in item)) if item else set()
    return set()


@dataclasses.dataclass(frozen=True)
class Rule:
    """torch key regex(es) -> NNX path template(s) via `transform`.

    one-to-one: torch=str, nnx=path template. split: nnx=tuple of templates. merge: torch=tuple of regexes.
    ignore: nnx=None. `torch_template` spells the export key(s) when the regex is not a plain literal.
    """

    torch: str | tuple[str, ...]
    nnx: PathTemplate | tuple[PathTemplate, ...] | None
    transform: Transform = identity
    torch_template: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        kind = self.transform.kind
        patterns = self.patterns
        if kind == "merge" and (isinstance(self.torch, str) or len(self.torch) < 2):
            raise ValueError(f"merge rule needs several torch patterns: {self.torch!r}")
        if kind != "merge" and not isinstance(self.torch, str):
            raise ValueError(f"{kind} rule takes one torch pattern, got {self.torch!r}")
        if kind == "ignore" and self.nnx is not None:
            raise ValueError(f"ignore rule for {self.torch!r} must have nnx=None")
        if kind != "ignore":
            if not isinstance(self.nnx, tuple) or not self.nnx:
                raise ValueError(f"rule {self.torch!r} needs an NNX path template, got {self.nnx!r}")
            if (kind == "split") != isinstance(self.nnx[0], tuple):
                raise ValueError(f"rule {self.torch!r}: split rules (only) take a tuple of NNX path templates")
            names = _placeholders(list(patterns)) | {n for p in patterns for n in _compile(p).groupindex}
            for tmpl in self.nnx_templates:
                if _placeholders(tmpl) != names:
                    raise ValueError(f"rule {self.torch!r}: placeholders {sorted(names)} differ from NNX template "
                                     f"{tmpl} placeholders {sorted(_placeholders(tmpl))}")
        object.__setattr__(self, "_compiled", tuple(_compile(p) for p in patterns))

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.torch,) if isinstance(self.torch, str) else tuple(self.torch)

    @property
    def nnx_templates(self) -> tuple[PathTemplate, ...]:
        if self.nnx is None:
            return ()
        return tuple(self.nnx) if self.transform.kind == "split" else (self.nnx,)

    def match(self, key: str) -> tuple[int, dict[str, str]] | None:
        """(pattern index, placeholder bindings) when `key` fully matches one of the torch patterns."""
        for part, regex in enumerate(self._compiled):  # type: ignore[attr-defined]
            m = regex.fullmatch(key)
            if m:
                return part, m.groupdict()
        return None

    def torch_keys(self, bindings: Mapping[str, str]) -> list[str]:
        templates = self.torch_template if self.torch_template is not None else tuple(
            _regex_to_template(p) for p in self.patterns)
        templates = (templates,) if isinstance(templates, str) else tuple(templates)
        if any(t is None for t in templates):
            raise BridgeMismatchError(f"rule {self.torch!r} is a regex that cannot be turned back into a key; "
                                      "give it a torch_template for export")
        return [t.format(**bindings) for t in templates]


def fill_path(template: PathTemplate, bindings: Mapping[str, str]) -> Path:
    """("blocks", "{i}", "w") + {i: "3"} -> ("blocks", 3, "w")."""
    out: list = []
    for part in template:
        if isinstance(part, str):
            m = _PLACEHOLDER.fullmatch(part)
            if m:  # a whole-part placeholder: list indices become ints, named-group text stays str
                value = bindings[m.group(1)]
                out.append(int(value) if value.isdigit() else value)
            else:
                out.append(part.format(**bindings))
        else:
            out.append(part)
    return tuple(out)


def match_path(template: PathTemplate, path: Path) -> dict[str, str] | None:
    """Inverse of `fill_path`: the bindings under which `template` produces `path`, or None."""
    if len(template) != len(path):
        return None
    bindings: dict[str, str] = {}

    def bind(name: str, value: str) -> bool:
        return bindings.setdefault(name, value) == value

    for t, p in zip(template, path):
        whole = _PLACEHOLDER.fullmatch(t) if isinstance(t, str) else None
        if whole:
            if not bind(whole.group(1), str(p)):
                return None
        elif isinstance(t, str) and _PLACEHOLDER.search(t):
            m = _compile(re.escape(t).replace(r"\{", "{").replace(r"\}", "}")).fullmatch(p) \
                if isinstance(p, str) else None
            if not m or not all(bind(k, v) for k, v in m.groupdict().items()):
                return None
        elif t != p:
            return None
    return bindings


@dataclasses.dataclass(frozen=True)
class RuleTable:
    """Ordered rules of one model family. `strip_prefixes` are removed (repeatedly) from torch keys before
    matching (`module.`, `_orig_mod.`, ...); `export_prefix` is prepended to exported keys."""

    name: str
    rules: Sequence[Rule]
    strip_prefixes: Sequence[str] = ()
    export_prefix: str = ""

    def strip(self, key: str) -> str:
        changed = True
        while changed:
            changed = False
            for prefix in self.strip_prefixes:
                if prefix and key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        return key

    def find(self, key: str) -> tuple[int, Rule, int, dict[str, str]] | None:
        for index, rule in enumerate(self.rules):
            hit = rule.match(key)
            if hit is not None:
                return index, rule, hit[0], hit[1]
        return None


# --------------------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------------------


def _fmt_path(path: Path) -> str:
    return "/".join(str(p) for p in path)


def _desc(shape: Any, dtype: Any) -> str:
    return f"{tuple(shape)} {np.dtype(dtype).name}"


@dataclasses.dataclass
class LoadReport:
    """What `load_into` did. `ok` is False when anything is missing, unexpected, mis-shaped or failed."""

    table: str
    loaded: dict = dataclasses.field(default_factory=dict)             # NNX path -> torch key(s)
    missing: list = dataclasses.field(default_factory=list)            # (NNX path, expected shape, dtype)
    unexpected: list = dataclasses.field(default_factory=list)         # (torch key, shape, dtype, reason)
    shape_mismatches: list = dataclasses.field(default_factory=list)   # (torch key, torch shape, transformed shape,
                                                                       #  expected shape, NNX path)
    dtype_casts: list = dataclasses.field(default_factory=list)        # (torch key, NNX path, from, to)
    ignored: list = dataclasses.field(default_factory=list)            # torch keys consumed by ignore rules
    errors: list = dataclasses.field(default_factory=list)             # (torch key, message)
    torch_shapes: dict = dataclasses.field(default_factory=dict)       # stripped torch key -> shape (for export)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches or self.errors)

    def format(self) -> str:
        lines = [f"torch -> NNX load with rule table '{self.table}': {len(self.loaded)} params set, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.shape_mismatches)} shape mismatches, {len(self.errors)} errors"]

        def section(title: str, header: Sequence[str], rows: list[Sequence[str]]) -> None:
            if not rows:
                return
            widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
            lines.append(f"\n{title} ({len(rows)}):")
            for row in [header, *rows]:
                lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())

        section("missing NNX params (no torch key maps to them)", ("NNX path", "expected"),
                [(_fmt_path(p), _desc(s, d)) for p, s, d in self.missing])
        section("unexpected torch keys", ("torch key", "shape", "reason"),
                [(k, _desc(s, d), why) for k, s, d, why in self.unexpected])
        section("shape mismatches", ("torch key", "torch shape", "after transform", "expected", "NNX path"),
                [(k, tuple(a), tuple(b), tuple(c), _fmt_path(p)) for k, a, b, c, p in self.shape_mismatches])
        section("errors", ("torch key", "problem"), [(k, m) for k, m in self.errors])
        section("dtype casts", ("torch key", "NNX path", "from", "to"),
                [(k, _fmt_path(p), np.dtype(a).name, np.dtype(b).name) for k, p, a, b in self.dtype_casts])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _cast(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    out = value.astype(dtype)
    if value.dtype.kind in "iub" and dtype.kind in "iub" and not np.array_equal(out.astype(value.dtype), value):
        raise ValueError(f"cast {value.dtype} -> {dtype} changes values (out of range)")
    return out


def load_into(target_flat: Mapping[Path, Any], torch_sd: Mapping[str, np.ndarray], table: RuleTable,
              strict: bool = True) -> tuple[dict[Path, np.ndarray], LoadReport]:
    """Map a torch state_dict onto NNX params described by `target_flat` (path -> anything with shape/dtype).

    Returns (flat params as contiguous numpy arrays in the target dtypes, LoadReport). With `strict` any missing,
    unexpected, mis-shaped or failing key raises BridgeMismatchError carrying the report; with `strict=False`
    the params that matched are returned. Failed value checks of `ignore` rules always raise.
    """
    report = LoadReport(table.name)
    stripped: dict[str, tuple[str, np.ndarray]] = {}
    for key, value in torch_sd.items():
        value = np.asarray(value)
        short = table.strip(key)
        if short in stripped:
            report.errors.append((key, f"same key as {stripped[short][0]!r} after stripping prefixes"))
            continue
        stripped[short] = (key, value)
        report.torch_shapes[short] = tuple(value.shape)

    def expected_shape(path: Path) -> tuple | None:
        return tuple(target_flat[path].shape) if path in target_flat else None

    produced: list[tuple[Path, np.ndarray, str, tuple]] = []  # (NNX path, array, torch key(s), torch shape)
    merges: dict[tuple[int, tuple], dict[int, tuple[str, np.ndarray]]] = collections.defaultdict(dict)
    failed_checks: list[tuple[str, str]] = []
    for short, (key, value) in stripped.items():
        found = table.find(short)
        if found is None:
            report.unexpected.append((key, value.shape, value.dtype, "no rule matches"))
            continue
        index, rule, part, bindings = found
        kind = rule.transform.kind
        try:
            if kind == "ignore":
                problem = rule.transform.check(value) if rule.transform.check else None
                if problem:
                    failed_checks.append((key, problem))
                report.ignored.append(key)
            elif kind == "merge":
                merges[(index, tuple(sorted(bindings.items())))][part] = (key, value)
            elif kind == "split":
                paths = [fill_path(t, bindings) for t in rule.nnx_templates]
                arrays = rule.transform.forward(value, [expected_shape(p) for p in paths])
                produced.extend((p, a, key, value.shape) for p, a in zip(paths, arrays))
            else:
                path = fill_path(rule.nnx, bindings)
                produced.append((path, rule.transform.forward(value, expected_shape(path)), key, value.shape))
        except (ValueError, KeyError, IndexError) as err:
            report.errors.append((key, f"{rule.transform.name} failed on shape {tuple(value.shape)}: {err}"))
    for (index, items), parts in merges.items():
        rule = table.rules[index]
        bindings = dict(items)
        if len(parts) != len(rule.patterns):
            missing = [rule.patterns[i] for i in range(len(rule.patterns)) if i not in parts]
            for _i, (key, value) in parts.items():
                report.unexpected.append((key, value.shape, value.dtype, f"merge incomplete, missing {missing}"))
            continue
        path = fill_path(rule.nnx, bindings)
        joined = "+".join(parts[i][0] for i in range(len(parts)))
        try:
            array = rule.transform.forward([parts[i][1] for i in range(len(parts))], expected_shape(path))
            produced.append((path, array, joined, tuple(parts[0][1].shape)))
        except ValueError as err:
            report.errors.append((joined, f"{rule.transform.name} failed: {err}"))

    params: dict[Path, np.ndarray] = {}
    for path, array, key, torch_shape in produced:
        array = np.asarray(array)
        if path not in target_flat:
            close = difflib.get_close_matches(_fmt_path(path), [_fmt_path(p) for p in target_flat], n=1)
            hint = f"; closest: {close[0]}" if close else ""
            report.unexpected.append((key, torch_shape, array.dtype, f"maps to {_fmt_path(path)}, not in model{hint}"))
            continue
        if path in params:
            report.errors.append((key, f"{_fmt_path(path)} already set from {report.loaded[path]!r}"))
            continue
        want = target_flat[path]
        if tuple(array.shape) != tuple(want.shape):
            report.shape_mismatches.append((key, torch_shape, array.shape, want.shape, path))
            continue
        dtype = np.dtype(want.dtype)
        if array.dtype != dtype:
            source_dtype = array.dtype
            try:
                array = _cast(array, dtype)
            except ValueError as err:
                report.errors.append((key, str(err)))
                continue
            report.dtype_casts.append((key, path, source_dtype, dtype))
        params[path] = np.asarray(array, order="C")
        report.loaded[path] = key
    report.missing = [(p, tuple(v.shape), v.dtype) for p, v in target_flat.items() if p not in params]
    if failed_checks:
        report.errors.extend(failed_checks)
        raise BridgeMismatchError("checkpoint value checks failed (the model would compute something else):\n"
                                  + report.format(), report)
    if strict and not report.ok:
        raise BridgeMismatchError(report.format(), report)
    return params, report


# --------------------------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------------------------


def _natural_key(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def export(params_flat: Mapping[Path, Any], table: RuleTable, torch_shapes: Mapping[str, Sequence[int]] | None = None,
           strict: bool = True) -> "collections.OrderedDict[str, np.ndarray]":
    """NNX flat params -> torch state_dict with upstream key names (the exact inverse of `load_into`).

    `torch_shapes` (stripped torch key -> shape, e.g. `LoadReport.torch_shapes`) is needed only by transforms that
    cannot be inverted from the array alone (reshape/flatten_patch without explicit shapes). Keys come out in
    natural order (`blocks.2` before `blocks.10`), prefixed with `table.export_prefix`.
    """
    torch_shapes = dict(torch_shapes or {})
    out: dict[str, np.ndarray] = {}
    splits: dict[tuple[int, tuple], dict[int, np.ndarray]] = collections.defaultdict(dict)
    unmatched: list[Path] = []
    for path, value in params_flat.items():
        value = np.asarray(value)
        hit = None
        for index, rule in enumerate(table.rules):
            for part, template in enumerate(rule.nnx_templates):
                bindings = match_path(template, tuple(path))
                if bindings is not None:
                    hit = (index, rule, part, bindings)
                    break
            if hit:
                break
        if hit is None:
            unmatched.append(path)
            continue
        index, rule, part, bindings = hit
        keys = rule.torch_keys(bindings)
        kind = rule.transform.kind
        if kind == "split":
            splits[(index, tuple(sorted(bindings.items())))][part] = value
        elif kind == "merge":
            for key, array in zip(keys, rule.transform.inverse(value, [torch_shapes.get(k) for k in keys])):
                out[key] = array
        else:
            out[keys[0]] = rule.transform.inverse(value, torch_shapes.get(keys[0]))
    for (index, items), parts in splits.items():
        rule = table.rules[index]
        key = rule.torch_keys(dict(items))[0]
        if len(parts) != len(rule.nnx_templates):
            raise BridgeMismatchError(f"export: {key} is split over {len(rule.nnx_templates)} NNX params but only "
                                      f"{sorted(parts)} are present")
        out[key] = rule.transform.inverse([parts[i] for i in range(len(parts))], torch_shapes.get(key))
    if unmatched and strict:
        listing = "\n  ".join(_fmt_path(p) for p in unmatched)
        raise BridgeMismatchError(f"export with rule table '{table.name}': no rule covers these NNX params:\n  "
                                  f"{listing}")
    _emit_constants(table, out)
    return collections.OrderedDict(
        (table.export_prefix + k, np.asarray(out[k], order="C")) for k in sorted(out, key=_natural_key))


def _emit_constants(table: RuleTable, out: dict[str, np.ndarray]) -> None:
    """Write back `ignore(expect=array)` constants once per index of the module they sit in."""
    for rule in table.rules:
        if rule.transform.kind != "ignore" or rule.transform.emit is None:
            continue
        template = rule.torch_keys({n: f"{{{n}}}" for n in _placeholders(rule.patterns[0])})[0]
        names = _PLACEHOLDER.findall(template)
        if not names:
            out.setdefault(template, rule.transform.emit.copy())
            continue
        last = max(template.rfind("{" + n + "}") + len(n) + 2 for n in names)
        scope = _compile(re.escape(template[:last]).replace(r"\{", "{").replace(r"\}", "}") + r"(?=\.|$)")
        for key in list(out):
            m = scope.match(key)
            if m:
                out.setdefault(template.format(**m.groupdict()), rule.transform.emit.copy())


# --------------------------------------------------------------------------------------------------------------
# rule builders shared by the family tables: a dotted torch key template (``blocks.{i}.attn``) gives both the key
# regex and the NNX path
# --------------------------------------------------------------------------------------------------------------


def key_regex(template: str) -> str:
    """``blocks.{i}.attn`` -> the regex ``blocks\\.{i}\\.attn`` (placeholders kept)."""
    return re.escape(template).replace(r"\{", "{").replace(r"\}", "}")


def nnx_path(template: str) -> PathTemplate:
    """``blocks.{i}.attn.3`` -> ``("blocks", "{i}", "attn", 3)``: digit parts are nnx.List indices."""
    return tuple(int(p) if p.isdigit() else p for p in template.split("."))


def rule(torch_key: str, nnx_key: str | None = None, transform: Transform = identity) -> Rule:
    """One rule from dotted templates; the NNX path defaults to the torch key's."""
    return Rule(key_regex(torch_key), nnx_path(nnx_key or torch_key), transform)


def linear(t: str, n: str | None = None, bias: bool = True) -> list[Rule]:
    """nn.Linear ``t`` -> nnx.Linear ``n`` (default ``t``): weight [out, in] is the transposed kernel."""
    n = n or t
    return [rule(f"{t}.weight", f"{n}.kernel", transpose)] + ([rule(f"{t}.bias", f"{n}.bias")] if bias else [])


def layer_norm(t: str, n: str | None = None) -> list[Rule]:
    n = n or t
    return [rule(f"{t}.weight", f"{n}.scale"), rule(f"{t}.bias", f"{n}.bias")]


def batch_norm(t: str) -> list[Rule]:
    names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
    return ([rule(f"{t}.{k}", f"{t}.{v}") for k, v in names.items()]
            + [rule(f"{t}.num_batches_tracked", f"{t}.count", astype(np.int32, np.int64))])


def patch_embed(t: str, patch_shape: tuple[int, ...]) -> list[Rule]:
    """Conv weight [O, C, k...] -> dense kernel [C*prod(k), O] (the model flattens patches in (c, k...) order)."""
    return [rule(f"{t}.proj.weight", f"{t}.proj.kernel", flatten_patch(patch_shape)),
            rule(f"{t}.proj.bias", f"{t}.proj.bias")]


# --------------------------------------------------------------------------------------------------------------
# size inference helpers
# --------------------------------------------------------------------------------------------------------------


def count_indices(sd: Mapping[str, Any], pattern: str) -> int:
    """How many consecutive indices `{i}` takes in keys matching `pattern` at their start (e.g. `blocks\\.{i}\\.`).

    Returns 0 when nothing matches; raises if the indices have gaps (0, 1, 3).
    """
    regex = _compile(pattern)
    names = _PLACEHOLDER.findall(pattern)
    if len(set(names)) != 1:
        raise ValueError(f"count_indices pattern needs exactly one placeholder, got {pattern!r}")
    found = {int(m.group(names[0])) for m in (regex.match(k) for k in sd) if m}
    if found and found != set(range(max(found) + 1)):
        raise ValueError(f"indices for {pattern!r} are not consecutive from 0: {sorted(found)}")
    return len(found)


def shape_of(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    """Shape of `sd[key]`, with a helpful error listing similar keys when it is absent."""
    if key not in sd:
        close = difflib.get_close_matches(key, list(sd), n=3)
        raise KeyError(f"checkpoint has no key {key!r}" + (f"; similar keys: {close}" if close else ""))
    return tuple(np.shape(sd[key]))


def strip_prefixes(sd: Mapping[str, Any], prefixes: Sequence[str]) -> "collections.OrderedDict[str, Any]":
    """A copy of `sd` with wrapper prefixes (`module.`, `_orig_mod.`, ...) removed from every key."""
    table = RuleTable("strip", [], tuple(prefixes))
    out: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for key, value in sd.items():
        short = table.strip(key)
        if short in out:
            raise ValueError(f"keys collide after stripping {list(prefixes)}: {short!r}")
        out[short] = value
    return out


def coerce_override(key: str, value: str, kind: Any) -> Any:
    """A ``--set key=value`` string as ``kind`` (bool, int, float, str or tuple[int, ...], or a dataclass field's
    type written as a string under ``from __future__ import annotations``)."""
    if kind in (bool, "bool"):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--set {key}={value}: expected true/false")
        return value.lower() in ("true", "1")
    if kind in (tuple[int, ...], "tuple[int, ...]"):
        return tuple(int(v) for v in value.strip("()[] ").split(",") if v.strip())
    cast = {"int": int, "float": float, "str": str}.get(kind, kind) if isinstance(kind, str) else kind
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"--set {key}={value}: expected a {getattr(cast, '__name__', cast)}") from None
