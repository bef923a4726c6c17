"""The repository reads as a product: its text speaks in a user's terms, not in those of the place it was built.

Every text file of the documentation, the source, the tests, the benchmarks, the configs, the Makefile, CI and
pyproject.toml is read (the files git knows of, tracked or new and not ignored; without git, a walk of the tree)
and none may contain:

- a tracker reference (the tracker's word for an entry followed by its number, or that word in parentheses): it
  means nothing to a reader; name the concept instead;
- the wording of a borrowed GPU machine (one that is handed out for a while, a list of what travels to it, the
  files returned from it, the tool that copies the working tree there): say "a GPU machine without network",
  "copied beside the repository", "the output folder";
- a path or a limit of the machine it was developed on (its working folder, its device-time allowance).

This file, which has to name them, is the one file not read.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

# What is read: these folders (every file below them) and these files.
ROOTS = ("docs", "src", "tests", "benchmarks", "configs", ".ci")
FILES = ("README.md", "Makefile", "pyproject.toml")
# Never read: binary or generated files, and what a run or an install leaves in the tree.
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".parquet", ".arrow", ".pkl", ".pt", ".bin",
                   ".safetensors", ".gguf", ".whl", ".gz", ".zip", ".pyc"}
SKIP_DIRS = {".git", ".venv", "results", "models", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache",
             ".whl", ".gpu_assets"}

ISSUE = "iss" + "ue"
CARRY = r"\bcar" + r"r(?:y|ies|ied|ying)\b"
WHEELISH = r"(?:wheels?|\.whl|\.gpu_assets|gpu machine|beside the repository)"

# (name shown in a failure, compiled pattern); every pattern is case-insensitive but the path.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an issue number", re.compile(r"\b" + ISSUE + r"[- _#]?\d+", re.IGNORECASE)),
    ("'(" + ISSUE + "' (an issue reference)", re.compile(r"\(" + ISSUE + r"\b", re.IGNORECASE)),
    ("'l" + "ent' (a borrowed machine)", re.compile(r"\bl" + r"ent\b", re.IGNORECASE)),
    ("a development-machine path", re.compile("/" + "work" + "/")),
    ("'carry' about wheels or the GPU machine", re.compile(CARRY + r"[^\n.;:]{0,30}?\b" + WHEELISH, re.IGNORECASE)),
    ("wheels that 'carry'", re.compile(r"\b" + WHEELISH + r"[^\n.;:]{0,30}?" + CARRY, re.IGNORECASE)),
]
# Exact phrases of the wording that was removed (case-insensitive, whole words at their ends).
PHRASES = [
    "car" + "ried wheels", "car" + "ried wheel", "car" + "ry list", "`car" + "ry`", "car" + "ry their wheels",
    "neither car" + "ried", "car" + "ried to the gpu", "as it is car" + "ried", "car" + "ried in all",
    "files come" + " back", "files that come" + " back", "whose files come" + " back",
    "the tool that" + " copies", "a tool that" + " copies", "that tool" + " returns",
    "64 mib with the" + " working tree", "files" + "_at", "budget" + "_left", "device" + " time",
    "development" + " machine", "this" + " session", "the sand" + "box", "15 minutes on the" + " gpu",
    "first emu" + "lation",
]
PHRASE_PATTERNS = [(p, re.compile((r"\b" if p[0].isalnum() else "") + re.escape(p) + (r"\b" if p[-1].isalnum() else ""),
                                  re.IGNORECASE)) for p in PHRASES]


def _wanted(rel: str) -> bool:
    parts = rel.split("/")
    if any(p in SKIP_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return False
    if Path(rel).suffix.lower() in BINARY_SUFFIXES:
        return False
    return rel in FILES or parts[0] in ROOTS


def _git_files() -> list[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]
    return names or None


def _walked_files() -> list[str]:
    found = []
    for top, dirs, files in os.walk(REPO, followlinks=True):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        found += [Path(top, f).relative_to(REPO).as_posix() for f in files]
    return found


def text_files() -> list[Path]:
    """The text files read, below REPO: from git, else from a walk; configs (a link into src) once, by its real
    path."""
    seen: set[Path] = set()
    paths = []
    names = _git_files() or _walked_files()
    for rel in sorted(names, key=lambda r: ((REPO / r).resolve() != REPO / r, r)):   # real paths first
        path = REPO / rel
        if not _wanted(rel) or not path.is_file():          # a link to a folder (configs), or a deleted file
            continue
        real = path.resolve()
        if real == THIS or real in seen:
            continue
        seen.add(real)
        paths.append(path)
    return paths


def line_hits(line: str) -> list[str]:
    """What in one line is forbidden: each pattern's name with what it matched, and each phrase found."""
    hits = [f"{name} ({m.group(0)!r})" for name, rx in PATTERNS for m in [rx.search(line)] if m]
    return hits + [repr(phrase) for phrase, rx in PHRASE_PATTERNS if rx.search(line)]


def wording_problems(path: Path) -> list[str]:
    """'file:line: the phrase: the line' for each forbidden pattern or phrase in a file (none for binary)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    rel = path.relative_to(REPO).as_posix()
    return [f"{rel}:{number}: {hit}: {line.strip()[:160]}"
            for number, line in enumerate(text.splitlines(), 1) for hit in line_hits(line)]


def test_the_wording_checks_read_the_repository():
    files = {p.relative_to(REPO).as_posix() for p in text_files()}
    assert {"README.md", "Makefile", "pyproject.toml", "docs/bench.md", "benchmarks/gpu_check.sh",
            "src/tunebench/bench/gpu_check/check.py", "src/tunebench/configs/base.yaml",
            "tests/test_gpu_check.py"} <= files
    assert "tests/test_product_wording.py" not in files


def test_the_patterns_catch_the_wording_they_name():
    for line in ("Iss" + "ue 12. A prepared check", "the " + ISSUE + "-7 thresholds", "SmolLM2 (" + ISSUE + " 15)",
                 "Before " + ISSUE + " 13: p = 0", "no GPU has been l" + "ent yet", "in /" + "work/main/.venv",
                 "car" + "ry `wheels/` beside the repository", "the wheels car" + "ry them",
                 "its `car" + "ry` list must name them", "5 files come" + " back", "the tool that" + " copies it"):
        assert line_hits(line), line
    for line in ("the seeds car" + "ry training noise", "QA features car" + "ry their example id",
                 "most libraries now l" + "end music", "detail = '; '.join(" + ISSUE + "s)",
                 "its metrics.json comes back", "equivalent to full fine-tuning", "per-device timing"):
        assert not line_hits(line), line


def test_no_text_file_speaks_of_issues_or_the_development_machine():
    problems = [p for path in text_files() for p in wording_problems(path)]
    assert not problems, "wording of the development environment, not a user's:\n" + "\n".join(problems)
