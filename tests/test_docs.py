"""Every reference in the docs resolves against the code: README.md, docs/*.md and the other
Markdown files of the repository (benchmarks/README.md, launch/README.md).

What is checked, all derived from the docs and the code (no list of names lives here):
  (a) paths: every repo-relative path that starts with a top-level folder of the repository
      (`colorjax/...`, `configs/...`, `docs/...`, `tests/...`, globs and `{a,b}` included)
      exists, `file.py::name` names a top-level def or class of that file (a test, a function),
      the module lists of code blocks (`colorjax/core/` then indented `registry.py ...`) exist,
      Markdown links and images (`[..](path)`, `![..](path)`, `<img src=..>`) resolve from the
      page that holds them, and a `page.md, "Section"` reference names a heading of that page;
  (b) dotted names `colorjax.x.y[.Name[.attr]]` resolve: the module by its file, the names in
      it by parsing its source (top-level defs, assignments and imports, followed through
      imports and class bodies), so nothing heavy (TensorFlow, ONNX) is imported;
  (c) `module.symbol` in backticks, where `module` is the file name of exactly one colorjax
      module (`base.EVALUATORS`, `steps.update_ema`), and `path.py`'s `symbol`, resolve alike;
  (d) every `--flag` of a `python -m colorjax.<command>` command line (code blocks and inline
      code) is one that command defines (its absl FlagValues, read by importing the command
      module), `--config.KEY=...` names a key of the config given by `--config=` (loaded by
      `colorjax.core.config_files.load`), and the flags of `python <script>.py` command lines
      are ones the script defines (absl DEFINE_* or argparse add_argument, read statically);
  (e) every `configs/x.py:variant` loads with that variant.

Each failure names the file, the line and the dead reference; one test per kind of check, each
listing all of its failures. `test_the_checks_find_planted_dead_references` runs the same checks
on a page of dead references, so that a check that finds nothing fails too.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import glob
import importlib
import itertools
import os
import re
import shlex
from typing import Iterator


def _repo_root() -> str:
  """The folder above this file that holds pyproject.toml (tests may live in a subfolder)."""
  path = os.path.dirname(os.path.abspath(__file__))
  while not os.path.exists(os.path.join(path, "pyproject.toml")):
    parent = os.path.dirname(path)
    assert parent != path, "no pyproject.toml above tests/test_docs.py"
    path = parent
  return path


REPO_ROOT = _repo_root()
PACKAGE = "colorjax"
# Extensions of file names written in backticks (`config.json`), not `module.symbol`s.
FILE_EXTENSIONS = frozenset(
    "py md json jsonl png jpg jpeg gif bmp webp tif tiff npz npy pth lock html txt toml cfg "
    "onnx stablehlo mp4 mov mkv webm avi sh sbatch csv yaml yml log pb orbax".split())
ABSL_BUILTIN_FLAGS = frozenset(
    ["flagfile", "undefok", "help", "helpfull", "helpshort", "helpxml", "h"])


# ------------------------------------------------------------------------------------------
# The docs, as segments: one per logical line of a code block, one per paragraph of prose.


@dataclasses.dataclass(frozen=True)
class Segment:
  path: str  # Relative to REPO_ROOT.
  line: int  # Of the segment's first character.
  text: str
  code: bool

  def line_at(self, offset: int) -> int:
    return self.line + self.text.count("\n", 0, offset)


@functools.cache
def gitignore_patterns() -> tuple[str, ...]:
  try:
    with open(os.path.join(REPO_ROOT, ".gitignore")) as f:
      return tuple(line.strip().strip("/") for line in f if line.strip() and line[0] != "#")
  except OSError:
    return ()


def gitignored(rel: str) -> bool:
  """Whether .gitignore covers `rel`: an output (`runs/...`, logs), which docs may name."""
  parts = rel.strip("/").split("/")
  for pattern in gitignore_patterns():
    if "/" in pattern:
      if any(fnmatch.fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
        return True
    elif any(fnmatch.fnmatch(part, pattern) for part in parts):
      return True
  return False


@functools.cache
def top_folders() -> tuple[str, ...]:
  """The repository's top-level folders that docs name (not .git, nothing .gitignore'd)."""
  return tuple(sorted(
      name for name in os.listdir(REPO_ROOT)
      if os.path.isdir(os.path.join(REPO_ROOT, name)) and name != ".git" and not gitignored(name)))


def doc_files() -> list[str]:
  """README.md, docs/**.md and every other Markdown file outside tests/ and third_party/."""
  found = []
  for folder, dirs, files in os.walk(REPO_ROOT):
    rel = os.path.relpath(folder, REPO_ROOT)
    if rel == ".":
      dirs[:] = [d for d in dirs if d in top_folders() and d not in ("tests", "third_party")]
    found += [os.path.normpath(os.path.join(rel, f)) for f in files if f.endswith(".md")]
  return sorted(found)


def segments_of(path: str, text: str) -> list[Segment]:
  """Fenced code blocks line by line (`\\` continuations joined), indented code blocks line by
  line, and the rest as paragraphs (consecutive non-blank lines)."""
  out: list[Segment] = []
  lines = text.split("\n")
  i = 0
  while i < len(lines):
    line = lines[i]
    if line.lstrip().startswith("```"):
      i += 1
      while i < len(lines) and not lines[i].lstrip().startswith("```"):
        start, joined = i, lines[i]
        while joined.endswith("\\") and i + 1 < len(lines):
          i += 1
          joined = joined[:-1] + " " + lines[i].strip()
        out.append(Segment(path, start + 1, joined, True))
        i += 1
      i += 1
      continue
    if not line.strip():
      i += 1
      continue
    start = i
    while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith("```"):
      i += 1
    block = lines[start:i]
    if all(l.startswith("    ") for l in block) and not re.match(r"\s*([-*+]|\d+\.)\s", block[0]):
      k = 0
      while k < len(block):  # An indented code block.
        first, joined = k, block[k]
        while joined.endswith("\\") and k + 1 < len(block):
          k += 1
          joined = joined[:-1] + " " + block[k].strip()
        out.append(Segment(path, start + 1 + first, joined, True))
        k += 1
    else:
      out.append(Segment(path, start + 1, "\n".join(block), False))
  return out


@functools.cache
def all_segments() -> tuple[Segment, ...]:
  segments = []
  for path in doc_files():
    with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as f:
      segments += segments_of(path, f.read())
  return tuple(segments)


def inline_spans(segment: Segment) -> Iterator[tuple[int, str]]:
  """(offset, text) of each `inline code` span of a prose segment (spans may wrap lines)."""
  if segment.code:
    return
  for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", segment.text):
    yield match.start(1), match.group(1).replace("\n", " ")


# ------------------------------------------------------------------------------------------
# The code, read statically.


def module_file(module: str) -> str | None:
  """The source file of a colorjax module ("colorjax.evals.base"), found by path, not import."""
  parts = module.split(".")
  if parts[0] != PACKAGE:
    return None
  base = os.path.join(REPO_ROOT, *parts)
  for candidate in (base + ".py", os.path.join(base, "__init__.py")):
    if os.path.isfile(candidate):
      return candidate
  return None


@functools.cache
def module_basenames() -> dict[str, tuple[str, ...]]:
  """File name (without .py) -> the colorjax modules of that name ("base" -> evals.base)."""
  names: dict[str, list[str]] = {}
  for path in glob.glob(os.path.join(REPO_ROOT, PACKAGE, "**", "*.py"), recursive=True):
    name = os.path.basename(path)[:-3]
    if not name.startswith("__"):
      rel = os.path.relpath(path, REPO_ROOT)[:-3]
      names.setdefault(name, []).append(rel.replace(os.sep, "."))
  return {name: tuple(modules) for name, modules in names.items()}


@dataclasses.dataclass(frozen=True)
class Symbol:
  kind: str  # "class", "def", "value", "module" (an import of a module), "from" (from-import).
  node: ast.AST | None = None
  target: str = ""  # "module": the module; "from": "module:name".


def _import_base(module: str, is_package: bool, level: int) -> str:
  parts = module.split(".")
  if not is_package:
    parts = parts[:-1]
  return ".".join(parts[:len(parts) - (level - 1)] if level > 1 else parts)


def _top_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
  """Statements at module level, including those inside top-level if/try/with blocks."""
  for node in body:
    yield node
    if isinstance(node, (ast.If, ast.Try, ast.With)):
      for field in ("body", "orelse", "finalbody", "handlers"):
        for child in getattr(node, field, []):
          if isinstance(child, ast.ExceptHandler):
            yield from _top_level_statements(child.body)
          else:
            yield from _top_level_statements([child])


def _import_symbols(node: ast.AST, module: str, is_package: bool) -> dict[str, Symbol]:
  out = {}
  if isinstance(node, ast.Import):
    for alias in node.names:
      if alias.asname:
        out[alias.asname] = Symbol("module", target=alias.name)
      else:
        out[alias.name.split(".")[0]] = Symbol("module", target=alias.name.split(".")[0])
  elif isinstance(node, ast.ImportFrom):
    source = node.module or ""
    if node.level:
      base = _import_base(module, is_package, node.level)
      source = f"{base}.{source}" if source else base
    for alias in node.names:
      out[alias.asname or alias.name] = Symbol("from", target=f"{source}:{alias.name}")
  return out


def _assigned_names(target: ast.AST) -> Iterator[str]:
  if isinstance(target, ast.Name):
    yield target.id
  elif isinstance(target, (ast.Tuple, ast.List)):
    for element in target.elts:
      yield from _assigned_names(element)


@functools.cache
def module_symbols(module: str) -> dict[str, Symbol]:
  """The names a colorjax module defines at top level, from its source: defs, classes,
  assignments, imports, and what a module `__getattr__` imports lazily."""
  path = module_file(module)
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  is_package = path.endswith("__init__.py")
  symbols: dict[str, Symbol] = {}
  for node in _top_level_statements(tree.body):
    if isinstance(node, ast.ClassDef):
      symbols[node.name] = Symbol("class", node)
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      symbols[node.name] = Symbol("def", node)
      if node.name == "__getattr__":  # Lazy attributes: the names it imports.
        for child in ast.walk(node):
          symbols.update(_import_symbols(child, module, is_package))
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
      symbols.update(_import_symbols(node, module, is_package))
    elif isinstance(node, ast.Assign):
      for target in node.targets:
        symbols.update((name, Symbol("value", node)) for name in _assigned_names(target))
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
      symbols.update((name, Symbol("value", node)) for name in _assigned_names(node.target))
  return symbols


def _class_members(node: ast.ClassDef) -> set[str]:
  """Names a class defines: its body's defs, classes and assignments, and `self.x = ...`."""
  members = set()
  for child in node.body:
    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      members.add(child.name)
    elif isinstance(child, ast.Assign):
      for target in child.targets:
        members.update(_assigned_names(target))
    elif isinstance(child, ast.AnnAssign):
      members.update(_assigned_names(child.target))
  for child in ast.walk(node):
    if (isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store)
        and isinstance(child.value, ast.Name) and child.value.id == "self"):
      members.add(child.attr)
  return members


def resolve(module: str, attrs: list[str], depth: int = 0) -> str | None:
  """None if `module.attrs...` exists, else why not. Names the source cannot settle (an
  attribute of a value, of an external module, inherited from a base class) are accepted."""
  if not attrs or depth > 12:
    return None
  name, rest = attrs[0], attrs[1:]
  symbol = module_symbols(module).get(name)
  if symbol is None:
    if module_file(f"{module}.{name}"):
      return resolve(f"{module}.{name}", rest, depth + 1)
    return f"{module} has no {name!r}"
  if symbol.kind == "class":
    return _resolve_member(symbol.node, f"{module}.{name}", rest)
  if symbol.kind == "module":
    return resolve(symbol.target, rest, depth + 1) if module_file(symbol.target) else None
  if symbol.kind == "from":
    source, original = symbol.target.split(":")
    if module_file(f"{source}.{original}"):
      return resolve(f"{source}.{original}", rest, depth + 1)
    if module_file(source):
      return resolve(source, [original, *rest], depth + 1)
  return None  # A def or a value: its attributes are not in the source.


def _resolve_member(node: ast.ClassDef, qualname: str, attrs: list[str]) -> str | None:
  if not attrs:
    return None
  if attrs[0] in _class_members(node):
    nested = [c for c in node.body if isinstance(c, ast.ClassDef) and c.name == attrs[0]]
    return _resolve_member(nested[0], f"{qualname}.{attrs[0]}", attrs[1:]) if nested else None
  if node.bases:
    return None  # Perhaps inherited.
  return f"{qualname} has no {attrs[0]!r}"


def resolve_dotted(name: str) -> str | None:
  """`colorjax.a.b.Name.attr`: the longest prefix that is a module file, then names in it."""
  parts = name.split(".")
  for split in range(len(parts), 0, -1):
    module = ".".join(parts[:split])
    if module_file(module):
      return resolve(module, parts[split:])
  return f"no module {parts[0]}"


# ------------------------------------------------------------------------------------------
# The checks. Each yields (segment, offset, reference, why).

PATH_TAIL = r"(?:[\w.\-/*]|\{[\w.,\-]*\})*"


def _path_pattern() -> re.Pattern[str]:
  folders = "|".join(re.escape(f) for f in sorted(top_folders(), key=len, reverse=True))
  return re.compile(rf"(?<![\w/.$~\-])(?:{folders})/{PATH_TAIL}")


def expand_braces(text: str) -> list[str]:
  match = re.search(r"\{([^{}]*)\}", text)
  if not match:
    return [text]
  return list(itertools.chain.from_iterable(
      expand_braces(text[:match.start()] + option + text[match.end():])
      for option in match.group(1).split(",")))


def existing(rel: str, base: str = REPO_ROOT) -> list[str]:
  """The files or folders `rel` (braces and globs allowed) names under `base`."""
  found = []
  for option in expand_braces(rel):
    full = os.path.normpath(os.path.join(base, option))
    found += glob.glob(full) if any(c in option for c in "*?[") else (
        [full] if os.path.exists(full) else [])
  return found


@functools.cache
def _top_level_defs(path: str) -> frozenset[str]:
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  return frozenset(n.name for n in _top_level_statements(tree.body)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def _file_defines(path: str, name: str) -> bool:
  return name in _top_level_defs(path)


@functools.cache
def _headings(path: str) -> list[str]:
  with open(path, encoding="utf-8") as f:
    text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
  return [line.lstrip("#").strip().lower() for line in text.split("\n") if line.startswith("#")]


def check_paths(segments) -> Iterator[tuple]:
  pattern = _path_pattern()
  for seg in segments:
    python_files = []  # (offset, files) of each .py path, for a bare `::name` after it.
    for match in pattern.finditer(seg.text):
      ref = match.group(0).rstrip(".,:;")
      if seg.text[match.end():match.end() + 1] == "<" or gitignored(ref):
        continue  # A placeholder (`tests/<package>/`), or an output that .gitignore covers.
      found = existing(ref)
      if not found:
        yield seg, match.start(), ref, "no such file or folder"
        continue
      if ref.endswith(".py"):
        python_files.append((match.start(), found))
        test = re.match(r"::(\w+)", seg.text[match.end():])
        if test and not any(_file_defines(f, test.group(1)) for f in found):
          yield seg, match.start(), f"{ref}::{test.group(1)}", "no such top-level def or class"
    # `tests/x.py::test_a`, `::test_b`: test_b is in tests/x.py too (the last .py of the line).
    for match in re.finditer(r"(?<![\w.])`::(\w+)`", seg.text):
      line_start = seg.text.rfind("\n", 0, match.start()) + 1
      before = [files for start, files in python_files if line_start <= start < match.start()]
      if before and not any(_file_defines(f, match.group(1)) for f in before[-1]):
        yield seg, match.start(), f"::{match.group(1)}", "no such test in the file before it"
      elif not before:
        yield seg, match.start(), f"::{match.group(1)}", "no file.py before it on its line"
  yield from _check_module_lists(segments)


def _check_module_lists(segments) -> Iterator[tuple]:
  """A code block that lists a folder (`colorjax/core/  ...`), then its files indented below."""
  folder, previous = None, None
  for seg in segments:
    if not seg.code or previous is None or previous.path != seg.path or (
        seg.line != previous.line + 1):
      folder = None
    previous = seg
    header = re.match(rf"({re.escape(PACKAGE)}/(?:\w+/)+)\s", seg.text + " ")
    if header:
      folder = header.group(1)
    elif folder and re.match(r"\s{2,}\w", seg.text):
      names = re.match(r"\s+((?:[\w.]+\.\w+(?:,\s*)?)+)(?:\s{2,}|$)", seg.text)
      for name in re.split(r",\s*", names.group(1)) if names else []:
        if not os.path.exists(os.path.join(REPO_ROOT, folder, name)):
          yield seg, 0, folder + name, "listed but no such file"
    elif not seg.text.startswith(" "):
      folder = None


def check_links(segments) -> Iterator[tuple]:
  link = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img\s[^>]*src=\"([^\"]+)\"")
  for seg in segments:
    if seg.code:
      continue
    base = os.path.join(REPO_ROOT, os.path.dirname(seg.path))
    for match in link.finditer(seg.text):
      target = (match.group(1) or match.group(2)).split("#")[0]
      if not target or re.match(r"[a-z]+:", target):
        continue  # An anchor on the same page, or a URL.
      if not existing(target, base):
        yield seg, match.start(), target, f"no such file from {os.path.dirname(seg.path) or '.'}"
    # `page.md, "Section"` and `[page](page.md), "Section"`: the page has that heading.
    for match in re.finditer(r"([\w./\-]+\.md)`?\)?,? \"([^\"]+)\"", seg.text):
      pages = existing(match.group(1), base) or existing(match.group(1))
      title = " ".join(match.group(2).split())
      if pages and not any(title.lower() in h for h in _headings(pages[0])):
        yield seg, match.start(), f'{match.group(1)}, "{title}"', "no heading of that page says so"


def check_dotted_names(segments) -> Iterator[tuple]:
  pattern = re.compile(rf"(?<![\w.\-/]){re.escape(PACKAGE)}(?:\.[A-Za-z_]\w*)+(?![\w\-])")
  for seg in segments:
    for match in pattern.finditer(seg.text):
      why = resolve_dotted(match.group(0))
      if why:
        yield seg, match.start(), match.group(0), why


def check_module_symbols(segments) -> Iterator[tuple]:
  for seg in segments:
    for offset, span in inline_spans(seg):
      match = re.fullmatch(r"([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)(?:\(.*\))?", span.strip())
      if not match:
        continue
      attrs = match.group(2).split(".")[1:]
      modules = module_basenames().get(match.group(1), ())
      if len(modules) != 1 or attrs[-1] in FILE_EXTENSIONS:
        continue  # Not a colorjax module's name, or ambiguous (`hints.`), or a file name.
      why = resolve(modules[0], attrs)
      if why:
        yield seg, offset, span.strip(), why
    # `path/to/module.py`'s `symbol`
    if not seg.code:
      for match in re.finditer(r"`?([\w/]+\.py)`?'s `([A-Za-z_][\w.]*)`", seg.text):
        rel = match.group(1)
        files = existing(rel) or existing(os.path.join(PACKAGE, rel))
        module = os.path.relpath(files[0], REPO_ROOT)[:-3].replace(os.sep, ".") if files else ""
        if module.startswith(PACKAGE + ".") and module_file(module):
          why = resolve(module.removesuffix(".__init__"), match.group(2).split("."))
          if why:
            yield seg, match.start(), f"{rel}'s {match.group(2)}", why


# Command lines.

COMMAND = re.compile(r"(?<![\w/])python(?:3(?:\.\d+)?)?\s+(-m\s+([\w.]*\w)|([\w./\-]+\.py))")


def _command_text(seg: Segment, start: int) -> str:
  """The command line from `start`: to the end of the line or span, before a shell comment,
  `&&`, `;`, `|` or a redirection."""
  text = seg.text[start:]
  if seg.code:
    text = text.split("\n")[0]
  return re.split(r"\s#|&&|\|\||;|\s\|\s|\s>", text)[0]


def command_lines(segments) -> Iterator[tuple[Segment, int, str]]:
  for seg in segments:
    if seg.code:
      for match in COMMAND.finditer(seg.text):
        yield seg, match.start(), _command_text(seg, match.start())
    for offset, span in inline_spans(seg):
      for match in COMMAND.finditer(span):
        yield seg, offset + match.start(), span[match.start():]


def _tokens(command: str) -> list[str]:
  try:
    tokens = shlex.split(command)
  except ValueError:
    tokens = command.split()
  return [t.strip("[]") for t in tokens]


@functools.cache
def command_flags(module: str) -> tuple[frozenset[str], frozenset[str]] | None:
  """(flag names, boolean flag names) of a colorjax command: the absl FlagValues its module
  holds (a `Command`'s `.flags`), read by importing it; None if it holds none."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  names, booleans = set(), set()
  candidates = [module]
  path = module_file(module)
  if path and path.endswith("__init__.py"):
    candidates.append(f"{module}.__main__")
  for candidate in candidates:
    if not module_file(candidate):
      continue
    imported = importlib.import_module(candidate)
    for value in vars(imported).values():
      for flag_values in (value, getattr(value, "flags", None)):
        if isinstance(flag_values, flags.FlagValues):
          for name in flag_values:
            names.add(name)
            if flag_values[name].boolean:
              booleans.add(name)
  return (frozenset(names), frozenset(booleans)) if names else None


@functools.cache
def script_flags(path: str) -> tuple[frozenset[str], bool] | None:
  """(flag names, argparse?) a script defines, read from its source and from the scripts of its
  folder that it imports: absl `DEFINE_*("name", ...)` and argparse `add_argument("--name")`."""
  names: set[str] = set()
  uses_argparse = False
  seen, todo = set(), [path]
  while todo:
    current = todo.pop()
    if current in seen or not os.path.isfile(current):
      continue
    seen.add(current)
    with open(current, encoding="utf-8") as f:
      tree = ast.parse(f.read(), current)
    for node in ast.walk(tree):
      if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        strings = [a.value for a in node.args if isinstance(a, ast.Constant)
                   and isinstance(a.value, str)]
        if func.startswith("DEFINE_") and strings:
          names.add(strings[0])
          if func in ("DEFINE_bool", "DEFINE_boolean"):
            names.add("no" + strings[0])
        elif func == "add_argument":
          uses_argparse = True
          names.update(s[2:] for s in strings if s.startswith("--"))
      elif isinstance(node, (ast.Import, ast.ImportFrom)):
        imported = [a.name for a in node.names] if isinstance(node, ast.Import) else [
            node.module or ""]
        todo += [os.path.join(os.path.dirname(current), n.replace(".", os.sep) + ".py")
                 for n in imported]
  return (frozenset(names), uses_argparse) if names else None


@functools.cache
def _config(spec: str):
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  return config_files.load(spec)


def config_has_key(path: str, key: str) -> bool:
  """Whether `--config.KEY=...` can override the config file `path[:variant]`, as the command
  applies overrides (`config_files.apply_overrides`; new keys only where it allows them)."""
  from colorjax.core import config_files  # pylint: disable=g-import-not-at-top
  config = _config(path).copy_and_resolve_references()
  try:
    config_files.apply_overrides(config, [f"{key}=0"])
  except (KeyError, AttributeError):
    return False
  except (ValueError, TypeError):
    pass  # The key exists; 0 is not a value of its type.
  return True


def check_command_flags(segments) -> Iterator[tuple]:
  for seg, offset, command in command_lines(segments):
    match = COMMAND.match(command)
    module, script = match.group(2), match.group(3)
    tokens = _tokens(command[match.end():])
    flags_used = [t for t in tokens if re.match(r"--[A-Za-z]", t)]
    if not flags_used:
      continue
    if module:
      if not module.startswith(PACKAGE + "."):
        continue  # pytest, ...
      if not module_file(module):
        yield seg, offset, f"python -m {module}", "no such module"
        continue
      defined = command_flags(module)
      if defined is None:
        yield seg, offset, f"python -m {module}", "the command defines no flags"
        continue
      names, booleans = defined
      names = names | {"no" + b for b in booleans} | ABSL_BUILTIN_FLAGS
      abbreviations = False
      prog = f"python -m {module}"
    else:
      if not existing(script):
        continue  # Reported by check_paths when the path is the repository's.
      defined = script_flags(existing(script)[0])
      if defined is None:
        continue
      names, abbreviations = defined
      names = names | ABSL_BUILTIN_FLAGS
      prog = f"python {script}"
    values = dict(t[2:].split("=", 1) for t in flags_used if "=" in t)
    for flag in flags_used:
      name = flag[2:].split("=", 1)[0]
      head, dot, key = name.partition(".")
      if dot and head in names:  # --config.KEY=VALUE: a key of the config --config= names.
        spec = values.get(head, "")
        path = spec.split(":")[0]
        if spec and existing(path) and os.path.isfile(existing(path)[0]):
          if not config_has_key(existing(path)[0] + spec[len(path):], key):
            yield seg, offset, f"{prog} --{name}", f"no key {key!r} in the config {spec}"
        continue
      if name in names or (abbreviations and sum(n.startswith(name) for n in names) == 1):
        continue
      yield seg, offset, f"{prog} --{name}", "the command defines no such flag"


def check_config_variants(segments) -> Iterator[tuple]:
  pattern = re.compile(rf"(?<![\w/.$~\-])(configs/{PATH_TAIL}\.py):(\w+)")
  for seg in segments:
    for match in pattern.finditer(seg.text):
      for path in itertools.chain.from_iterable(map(existing, expand_braces(match.group(1)))):
        try:
          _config(f"{path}:{match.group(2)}")
        except ValueError as e:
          yield seg, match.start(), match.group(0), str(e)


CHECKS = {
    "paths": check_paths,
    "links": check_links,
    "dotted_names": check_dotted_names,
    "module_symbols": check_module_symbols,
    "command_flags": check_command_flags,
    "config_variants": check_config_variants,
}


def failures(check, segments) -> list[str]:
  return sorted({f"{seg.path}:{seg.line_at(offset)}: {ref}: {why}"
                 for seg, offset, ref, why in check(segments)})


# ------------------------------------------------------------------------------------------
# The tests.


def test_the_docs_are_found():
  files = doc_files()
  assert "README.md" in files and any(f.startswith("docs" + os.sep) for f in files), files
  assert len(all_segments()) > 100


def _run(name: str) -> None:
  found = failures(CHECKS[name], all_segments())
  assert not found, f"{len(found)} dead reference(s) in the docs:\n" + "\n".join(found)


def test_paths_exist():
  _run("paths")


def test_links_resolve():
  _run("links")


def test_dotted_names_resolve():
  _run("dotted_names")


def test_module_symbols_resolve():
  _run("module_symbols")


def test_command_flags_are_defined():
  _run("command_flags")


def test_config_variants_exist():
  _run("config_variants")


def test_the_checks_find_planted_dead_references():
  """A page of dead references: every check must report each one, with its line."""
  unique = sorted(name for name, modules in module_basenames().items() if len(modules) == 1)[0]
  config = os.path.relpath(sorted(glob.glob(os.path.join(REPO_ROOT, "configs", "*.py")))[0],
                           REPO_ROOT)
  subpackage = sorted(os.path.dirname(os.path.relpath(p, REPO_ROOT)) for p in glob.glob(
      os.path.join(REPO_ROOT, PACKAGE, "*", "__init__.py")))[0] + "/"
  this_file = os.path.relpath(os.path.abspath(__file__), REPO_ROOT)
  page = "\n".join([
      "See `configs/no_such_config.py` and [a page](no_such_page.md).",
      f"`{this_file}::test_no_such_test`, `{PACKAGE}.core.no_such_module`.",
      f"`{PACKAGE}.core.config_files.no_such_function`, `{unique}.no_such_symbol_here`.",
      "",
      "```bash",
      f"python -m {PACKAGE}.main --config={config} --no_such_flag=1 \\",
      "  --config.no_such_key=3",
      "```",
      "",
      f"`{config}:no_such_variant`; `docs/training.md`, \"No such section\".",
      "",
      "```",
      f"{subpackage}    the subpackage",
      "  __init__.py, no_such_part.py     its modules",
      "```",
  ])
  segments = segments_of(os.path.join("docs", "planted.md"), page)
  expected = {
      "paths": ["docs/planted.md:1: configs/no_such_config.py",
                f"docs/planted.md:2: {this_file}::test_no_such_test",
                f"docs/planted.md:14: {subpackage}no_such_part.py"],
      "links": ["docs/planted.md:1: no_such_page.md",
                "docs/planted.md:10: docs/training.md, \"No such section\""],
      "dotted_names": [f"docs/planted.md:2: {PACKAGE}.core.no_such_module",
                       f"docs/planted.md:3: {PACKAGE}.core.config_files.no_such_function"],
      "module_symbols": [f"docs/planted.md:3: {unique}.no_such_symbol_here"],
      "command_flags": [f"docs/planted.md:6: python -m {PACKAGE}.main --no_such_flag",
                        f"docs/planted.md:6: python -m {PACKAGE}.main --config.no_such_key"],
      "config_variants": [f"docs/planted.md:10: {config}:no_such_variant"],
  }
  for name, check in CHECKS.items():
    found = failures(check, segments)
    for prefix in expected[name]:
      assert any(f.startswith(prefix + ": ") for f in found), (name, prefix, found)
    assert len(found) == len(expected[name]), (name, found)
