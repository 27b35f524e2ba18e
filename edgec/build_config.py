"""The build config (``edgec.toml``): parsed with ``tomllib`` and validated before anything is built.

Every mistake is a :class:`ConfigError` that names the file and the line of the offending key.
``tomllib`` keeps no positions, so :class:`KeyLines` rescans the text for table headers and key
assignments to find them. Paths in the config are relative to the config file's folder.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field

from edgec.errors import BadInputError, EdgecError

GLOBAL_KEYS = ("verify", "cache_dir", "models")
MODEL_KEYS = ("path", "inputs", "targets", "quantize", "layout", "calibration", "tuning_db", "verify",
              "int4_group", "int4_symmetric", "int4_embeddings", "int4_lm_head")
# edgec.compile's int4 keywords, as the config spells them: (type, what, default)
INT4_KEYS = {"int4_group": (int, "32, 64 or 128", None), "int4_symmetric": (bool, "true or false", False),
             "int4_embeddings": (bool, "true or false", False), "int4_lm_head": (bool, "true or false", True)}
QUANTIZE = ("int4",)
LAYOUTS = ("auto", "none")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class ConfigError(BadInputError):
    """The build config is malformed; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class TargetEntry:
    label: str  # the folder name under DIR/<model>/: the preset as written, or the JSON file's stem
    spec: str  # what edgec.targets.resolve takes: a preset name or an absolute JSON path


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str  # absolute
    targets: tuple[TargetEntry, ...]
    inputs: tuple[str, ...] = ()  # NAME:DIMS[:DTYPE], as edgec compile --input takes them
    quantize: str | None = None
    layout: str = "auto"
    calibration: str | None = None  # absolute
    tuning_db: str | None = None  # absolute
    verify: bool | None = None  # None: the config's global verify
    int4: dict = field(default_factory=dict)  # the int4_* keys given, as edgec.compile keywords
    written: dict = field(default_factory=dict)  # the options as the config spells them (relative paths)


@dataclass(frozen=True)
class BuildConfig:
    path: str
    models: tuple[ModelEntry, ...]
    verify: bool = False
    cache_dir: str | None = None  # absolute, when the config sets one


# -- where each key is written ----------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_dotted(text: str, pos: int) -> tuple[list[str], int] | None:
    """Read a dotted TOML key (``a."b c".d``) starting at ``pos``; returns the parts and the end."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch in "\"'":
            end = pos + 1
            while end < len(text) and text[end] != ch:
                end += 2 if ch == '"' and text[end] == "\\" else 1
            if end >= len(text):
                return None
            raw = text[pos + 1:end]
            parts.append(raw.encode().decode("unicode_escape") if ch == '"' and "\\" in raw else raw)
            pos = end + 1
        else:
            m = _BARE.match(text, pos)
            if not m:
                return None
            parts.append(m.group())
            pos = m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return parts, pos


class KeyLines:
    """The line (1-based) where each table header and key path first appears in a TOML text.

    Keys inside an inline table or a multi-line value are attributed to the line of the key that
    holds them: :meth:`line` falls back to the closest enclosing path it knows.
    """

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.where: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        open_quote = None
        for number, line in enumerate(self.lines, 1):
            if open_quote:
                if line.count(open_quote) % 2 == 1:
                    open_quote = None
                continue
            stripped = line.lstrip()
            if stripped.startswith("["):
                header = stripped[2:] if stripped.startswith("[[") else stripped[1:]
                parsed = _parse_dotted(header, 0)
                if parsed:
                    table = tuple(parsed[0])
                    self._record(table, number)
                continue
            parsed = _parse_dotted(line, 0)
            if parsed and parsed[1] < len(line) and line[parsed[1]] == "=":
                self._record(table + tuple(parsed[0]), number)
                rest = line[parsed[1] + 1:]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        open_quote = quote

    def _record(self, path: tuple[str, ...], number: int) -> None:
        for i in range(1, len(path) + 1):
            self.where.setdefault(path[:i], number)

    def line(self, *path: str) -> int:
        for i in range(len(path), 0, -1):
            if path[:i] in self.where:
                return self.where[path[:i]]
        return 1

    def value_line(self, path: tuple[str, ...], value: str) -> int:
        """The line of a string ``value`` inside the (possibly multi-line) value of ``path``."""
        start = self.line(*path)
        quoted = (f'"{value}"', f"'{value}'")
        for number in range(start, len(self.lines) + 1):
            text = self.lines[number - 1]
            if any(q in text for q in quoted):
                return number
            if number > start and (text.lstrip().startswith("[") and "=" not in text or
                                   _parse_dotted(text, 0) and "=" in text):
                break
        return start


# -- validation -------------------------------------------------------------------------------


class _Checker:
    def __init__(self, path: str, text: str):
        self.path, self.lines = path, KeyLines(text)
        self.shown = _shown(path)

    def fail(self, line: int, message: str) -> ConfigError:
        return ConfigError(f"{self.shown}:{line}: {message}")

    def at(self, path: tuple[str, ...], message: str) -> ConfigError:
        return self.fail(self.lines.line(*path), message)

    def keys(self, table: dict, path: tuple[str, ...], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(allowed)}"
                where = ".".join(path) + "." if path else ""
                raise self.at(path + (key,), f"unknown key '{where}{key}'{hint}")

    def typed(self, table: dict, path: tuple[str, ...], key: str, kind, what: str):
        value = table.get(key)
        if value is not None and not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.at(path + (key,), f"'{'.'.join(path + (key,))}' must be {what}, not {value!r}")
        return value

    def file(self, table: dict, path: tuple[str, ...], key: str, *, folder: bool = False) -> str | None:
        value = self.typed(table, path, key, str, "a path (string)")
        if value is None:
            return None
        full = os.path.normpath(os.path.join(os.path.dirname(self.path), value))
        ok = os.path.isdir(full) if folder else os.path.isfile(full)
        if not ok:
            kind = "folder" if folder else "file"
            state = "is not a " + kind if os.path.exists(full) else "does not exist"
            raise self.at(path + (key,), f"'{'.'.join(path + (key,))}': {kind} {value} {state}")
        return full


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def load_config(path: str) -> BuildConfig:
    """Read and validate ``path``; raises :class:`ConfigError` naming the line of the first mistake."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"build config {path} does not exist (pass the path, or create edgec.toml)") from None
    except OSError as err:
        raise ConfigError(f"cannot read build config {path}: {err.strerror}") from None
    path = os.path.abspath(path)
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{_shown(path)}:1: not UTF-8 text ({err.reason})") from None
    except tomllib.TOMLDecodeError as err:
        # tomllib puts "(at line N, column M)" in its message; move it to the front
        message = str(err)
        m = re.search(r"\(at line (\d+), column \d+\)", message)
        line = m.group(1) if m else str(text.count("\n") + 1)
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise ConfigError(f"{_shown(path)}:{line}: not valid TOML: {message}") from None
    return _validate(_Checker(path, text), data)


def _validate(check: _Checker, data: dict) -> BuildConfig:
    check.keys(data, (), GLOBAL_KEYS)
    verify = bool(check.typed(data, (), "verify", bool, "true or false"))
    cache_dir = check.typed(data, (), "cache_dir", str, "a path (string)")
    if cache_dir is not None:
        cache_dir = os.path.normpath(os.path.join(os.path.dirname(check.path), cache_dir))
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise check.at(("models",), "the config defines no models: add a [models.NAME] table with path and targets")
    entries = []
    for name, table in models.items():
        where = ("models", name)
        if not isinstance(table, dict):
            raise check.at(where, f"'models.{name}' must be a table ([models.{name}])")
        if not _SAFE_NAME.match(name):
            raise check.at(where, f"model name {name!r} must be a plain folder name (letters, digits, _ . + -)")
        entries.append(_model(check, name, table, where))
    return BuildConfig(check.path, tuple(entries), verify, cache_dir)


def _model(check: _Checker, name: str, table: dict, where: tuple[str, ...]) -> ModelEntry:
    check.keys(table, where, MODEL_KEYS)
    if "path" not in table:
        raise check.at(where, f"model '{name}' has no 'path' (the .onnx or .pt2 file to build)")
    model_path = check.file(table, where, "path")
    if "targets" not in table:
        raise check.at(where, f"model '{name}' has no 'targets' (a list of preset names or target JSON files)")
    targets = check.typed(table, where, "targets", list, "a list of target names")
    if not targets:
        raise check.at(where + ("targets",), f"'models.{name}.targets' is empty")
    quantize = check.typed(table, where, "quantize", str, "a string")
    if quantize is not None and quantize not in QUANTIZE:
        raise check.at(where + ("quantize",), f"'models.{name}.quantize' must be one of {QUANTIZE}, not {quantize!r}")
    layout = check.typed(table, where, "layout", str, "a string") or "auto"
    if layout not in LAYOUTS:
        raise check.at(where + ("layout",), f"'models.{name}.layout' must be one of {LAYOUTS}, not {layout!r}")
    calibration = check.file(table, where, "calibration")
    if calibration and not quantize:
        raise check.at(where + ("calibration",), f"'models.{name}.calibration' applies with quantize = \"int4\"")
    tuning_db = check.file(table, where, "tuning_db", folder=True)
    verify = check.typed(table, where, "verify", bool, "true or false")
    int4 = {}
    for key, (kind, what, _default) in INT4_KEYS.items():
        value = check.typed(table, where, key, kind, what)
        if value is None:
            continue
        if quantize != "int4":
            raise check.at(where + (key,), f"'models.{name}.{key}' applies with quantize = \"int4\"")
        if key == "int4_group" and value not in (32, 64, 128):
            raise check.at(where + (key,), f"'models.{name}.int4_group' must be {what}, not {value!r}")
        int4[key] = value
    written = {k: table[k] for k in ("quantize", "layout", "calibration", "tuning_db", *INT4_KEYS) if k in table}
    written.setdefault("layout", "auto")
    return ModelEntry(
        name=name, path=model_path, targets=_targets(check, name, targets, where),
        inputs=_inputs(check, table.get("inputs"), where), quantize=quantize, layout=layout,
        calibration=calibration, tuning_db=tuning_db, verify=verify, int4=int4, written=written,
    )


def _inputs(check: _Checker, inputs, where: tuple[str, ...]) -> tuple[str, ...]:
    from edgec.signature import parse_input_option

    if inputs is None:
        return ()
    if not isinstance(inputs, dict):
        raise check.at(where + ("inputs",), f"'{'.'.join(where)}.inputs' must be a table like "
                                            '{x = "1x3x224x224:float32"}')
    specs = []
    for input_name, value in inputs.items():
        path = where + ("inputs", input_name)
        if not isinstance(value, str):
            raise check.at(path, f"input {input_name!r} must be a string \"DIMS[:DTYPE]\", not {value!r}")
        try:
            parse_input_option(f"{input_name}:{value}")
        except EdgecError as err:
            raise check.at(path, str(err)) from None
        specs.append(f"{input_name}:{value}")
    return tuple(specs)


def _targets(check: _Checker, name: str, targets: list, where: tuple[str, ...]) -> tuple[TargetEntry, ...]:
    from edgec.targets import resolve

    path = where + ("targets",)
    entries: dict[str, TargetEntry] = {}
    for spec in targets:
        if not isinstance(spec, str):
            raise check.at(path, f"'models.{name}.targets' must hold strings, not {spec!r}")
        line = check.lines.value_line(path, spec)
        is_file = spec.endswith(".json") or "/" in spec or os.path.sep in spec
        resolved = os.path.normpath(os.path.join(os.path.dirname(check.path), spec)) if is_file else spec
        try:
            resolve(resolved)
        except EdgecError as err:
            raise check.fail(line, f"model '{name}': {err}") from None
        label = os.path.splitext(os.path.basename(spec))[0] if is_file else spec
        if label in entries:
            raise check.fail(line, f"model '{name}' lists target {label!r} twice")
        entries[label] = TargetEntry(label, resolved)
    return tuple(entries.values())
