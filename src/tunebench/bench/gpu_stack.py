"""What the GPU check needs of a Python stack, checked where a failure costs least. Standard library only (and
`packaging` where it is installed): benchmarks/gpu_check.sh runs this file by its path before anything of tunebench
is imported, and benchmarks/prepare_gpu_assets.sh runs it where the wheels are downloaded.

    python3 src/tunebench/bench/gpu_stack.py imports
        The Python and package versions the check runs with (one line), then every module the check imports,
        each tried: any that is missing, or that imports one that is missing (`datasets` needs `xxhash`), ends
        it with one line naming them and exit 2; versions outside pyproject.toml's ranges get one warning line.

    python3 src/tunebench/bench/gpu_stack.py wheels DIR STACK_FILE PYTHON_VERSION
        Every requirement of the wheels in DIR (their METADATA's Requires-Dist, markers evaluated for that
        Python on Linux x86-64, extras left out) is met by a wheel in DIR or named by the target's stack file
        (benchmarks/gpu_target_stack.txt); else one line naming what is not, exit 2.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import platform
import re
import sys
import zipfile
from pathlib import Path

# The third-party modules the check imports (the submodules it reaches for lazily among them), with the
# distribution that provides each. tests/test_gpu_check.py checks that every third-party import of tunebench's
# modules is here or in OPTIONAL.
THIRD_PARTY = {
    "torch": "torch", "torch.profiler": "torch", "torch.nn.attention": "torch", "transformers": "transformers",
    "peft": "peft", "peft.tuners.lora": "peft", "accelerate": "accelerate", "datasets": "datasets",
    "pydantic": "pydantic", "pandas": "pandas", "numpy": "numpy", "pyarrow": "pyarrow",
    "huggingface_hub": "huggingface_hub", "tokenizers": "tokenizers", "safetensors": "safetensors",
    "safetensors.torch": "safetensors", "scipy.stats": "scipy", "sklearn.metrics": "scikit-learn",
    "matplotlib.figure": "matplotlib", "yaml": "PyYAML", "rich.console": "rich", "rich.table": "rich",
    "psutil": "psutil",
}
# Imported only by what the check does not use: W&B (tracking.backend=none), Ray, GGUF conversion, the bf16-true
# optimizers; sentencepiece is a pyproject dependency that transformers loads only for a slow LLaMA tokenizer;
# packaging only by this file's version checks, which are skipped without it.
OPTIONAL = {"wandb", "ray", "gguf", "optimi", "torchao", "sentencepiece", "liger_kernel", "bitsandbytes", "packaging"}
# tunebench's modules on the check's path: importing them tries every import at their top.
PROJECT = ("tunebench.cli", "tunebench.commands.bench",
           "tunebench.bench.gpu_check.modes", "tunebench.bench.gpu_check.budget", "tunebench.bench.gpu_check.log",
           "tunebench.bench.gpu_check.synthetic", "tunebench.bench.gpu_check.build", "tunebench.bench.gpu_check.sdpa",
           "tunebench.bench.gpu_check.training", "tunebench.bench.gpu_check.batch_search",
           "tunebench.bench.gpu_check.compile_child", "tunebench.bench.gpu_check.real_run",
           "tunebench.bench.gpu_check.targets", "tunebench.bench.gpu_check.scratch",
           "tunebench.bench.gpu_check.determinism", "tunebench.bench.gpu_check.check", "tunebench.bench.gpu_check.run",
           "tunebench.runner", "tunebench.train", "tunebench.sanity", "tunebench.data.sources",
           "tunebench.report.build", "tunebench.report.render")
# Printed with their versions (what a reader of console.log wants to know first).
VERSIONS = ("torch", "triton", "transformers", "peft", "accelerate", "datasets", "pydantic", "pandas", "pyarrow",
            "numpy", "huggingface_hub", "tokenizers", "safetensors", "xxhash", "dill", "multiprocess", "regex",
            "scipy", "scikit-learn", "matplotlib")
# Import names that differ from the distribution's (for the hint of which wheel to add).
DISTRIBUTION_OF = {"yaml": "PyYAML", "sklearn": "scikit-learn", "dateutil": "python-dateutil", "PIL": "pillow"}
WHEEL_HINT = ("add their wheels to benchmarks/prepare_gpu_assets.sh (copied to the GPU machine in .whl/) "
              "or install them there")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (PyYAML -> pyyaml, typing_extensions -> typing-extensions)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def versions_line() -> str:
    found = []
    for name in VERSIONS:
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            found.append(f"{name} MISSING")
    return f"python {platform.python_version()} ({sys.executable}): " + ", ".join(found)


def missing_module(e: BaseException) -> tuple[str, str | None] | None:
    """The module a failed import could not find, and the package whose code imported it: the deepest
    ModuleNotFoundError with a name in the chain of causes (transformers' lazy modules re-raise the one from
    underneath as their own), and the last frame of its traceback outside importlib."""
    found, seen, cur = None, set(), e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ModuleNotFoundError) and cur.name:
            found = cur
        cur = cur.__cause__ or cur.__context__
    if found is None:
        return None
    importer, tb, top = None, found.__traceback__, found.name.split(".")[0]
    while tb is not None:
        name = tb.tb_frame.f_globals.get("__name__") or ""
        if not tb.tb_frame.f_code.co_filename.startswith("<frozen") and name.split(".")[0] != top:
            importer = name
        tb = tb.tb_next
    return found.name, importer.split(".")[0] if importer else None


def try_import(module: str) -> str | None:
    """None when `module` imports; else what is wrong, as 'missing X (imported by Y)' or 'Y: the error'."""
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 -- a missing module, or a package that breaks at import
        found = missing_module(e)
        if found is not None:
            name, importer = found
            missing, top = name.split(".")[0], module.split(".")[0]
            by = importer if importer not in (None, "__main__", __name__, "importlib") else top
            if missing == top or module.startswith(f"{name}.") or by == missing:
                return f"missing {DISTRIBUTION_OF.get(missing, missing)}"
            return f"missing {DISTRIBUTION_OF.get(missing, missing)} (imported by {by})"
        first = (str(e).strip().splitlines() or [""])[0][:200]
        return f"{module}: {type(e).__name__}: {first}"
    return None


def import_problems(modules: list[str] | tuple[str, ...]) -> list[str]:
    """What is wrong with each of `modules` (in order, each problem once: a missing package is named by the
    first module that needs it)."""
    problems: list[str] = []
    for module in modules:
        p = try_import(module)
        if p is not None and not any(p.split(" (")[0] == q.split(" (")[0] for q in problems):
            problems.append(p)
    return problems


def cannot_start_line(problems: list[str]) -> str:
    return f"gpu check: cannot start: {'; '.join(problems)}: {WHEEL_HINT}"


def _requirement(text: str):
    from packaging.requirements import Requirement

    return Requirement(text)


def out_of_range(pyproject: Path, skip: set[str] = OPTIONAL) -> list[str]:
    """The installed distributions outside pyproject.toml's `dependencies` ranges ([] without `packaging`)."""
    import tomllib

    try:
        deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
        _requirement("x")
    except (OSError, KeyError, ValueError, ImportError):
        return []
    out = []
    for text in deps:
        req = _requirement(text)
        if normalize(req.name) in {normalize(s) for s in skip}:
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            continue                              # a needed one is reported by the import check
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            out.append(f"{req.name} {version} (pyproject.toml: {req.specifier})")
    return out


def check_imports(pyproject: Path | None = None) -> int:
    """`imports`: the versions line, then exit 2 with one line when a module the check needs does not import."""
    print(versions_line(), flush=True)
    problems = import_problems([*THIRD_PARTY, *PROJECT])
    if problems:
        print(cannot_start_line(problems), file=sys.stderr, flush=True)
        return 2
    outside = out_of_range(pyproject or Path(__file__).resolve().parents[3] / "pyproject.toml")
    if outside:
        print("gpu check: warning: outside the ranges tunebench was tested with: " + ", ".join(outside), flush=True)
    print(f"gpu check: every module the check needs imports ({len(THIRD_PARTY) + len(PROJECT)} tried)", flush=True)
    return 0


# ---------------------------------------------------------------- the requirements of the wheels in .whl/


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) from a wheel's METADATA."""
    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = z.read(meta).decode("utf-8")
    head = text.split("\n\n", 1)[0]
    fields = [line.split(":", 1) for line in head.splitlines() if ":" in line and not line.startswith(" ")]
    name = next(v.strip() for k, v in fields if k == "Name")
    version = next(v.strip() for k, v in fields if k == "Version")
    return name, version, [v.strip() for k, v in fields if k == "Requires-Dist"]


def marker_environment(python_version: str) -> dict[str, str]:
    """A CPython on Linux x86-64 (the GPU machine), for evaluating Requires-Dist markers."""
    return {"python_version": python_version, "python_full_version": f"{python_version}.0", "os_name": "posix",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "platform_python_implementation": "CPython", "implementation_name": "cpython",
            "implementation_version": f"{python_version}.0", "platform_release": "", "platform_version": "",
            "extra": ""}


def stack_requirements(stack_file: Path, python_version: str) -> dict[str, object]:
    """The target stack file's requirements for that Python, by normalized name (comments, blank lines and
    lines whose marker excludes that Python skipped)."""
    env = marker_environment(python_version)
    reqs = {}
    for line in stack_file.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            req = _requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                reqs[normalize(req.name)] = req
    return reqs


def uncovered_requirements(wheels: list[Path], stack: dict[str, object], python_version: str) -> list[str]:
    """Each requirement of the wheels that neither a wheel nor the stack meets: not there, or a version the
    requirement excludes (a stack entry pinned with == is checked; an unpinned one is taken to fit)."""
    env = marker_environment(python_version)
    in_wheels = {}
    metas = []
    for w in wheels:
        name, version, requires = wheel_metadata(w)
        in_wheels[normalize(name)] = version
        metas.append((name, requires))
    problems = []
    for name, requires in metas:
        for text in requires:
            req = _requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            key = normalize(req.name)
            have = in_wheels.get(key)
            where = "among the wheels"
            if have is None and key in stack:
                pinned = [s.version for s in stack[key].specifier if s.operator in ("==", "===")]
                have, where = (pinned[0] if pinned else ""), "on the target"
            if have is None:
                problems.append(f"{req.name} (required by {name}: neither among the wheels nor on the target)")
            elif have and req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{req.name} {have} {where} (required by {name} as {req.specifier})")
    return sorted(set(problems))


def check_wheels(folder: Path, stack_file: Path, python_version: str) -> int:
    wheels = sorted(folder.glob("*.whl"))
    problems = uncovered_requirements(wheels, stack_requirements(stack_file, python_version), python_version)
    if problems:
        print(f"prepare_gpu_assets: requirements of the wheels not met on the target: {'; '.join(problems)}",
              file=sys.stderr)
        return 2
    print(f"the requirements of the {len(wheels)} wheels are met (among the wheels, or on the target's stack, "
          f"{stack_file.name})")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["imports"] and len(argv) == 1:
        return check_imports()
    if argv[:1] == ["wheels"] and len(argv) == 4:
        return check_wheels(Path(argv[1]), Path(argv[2]), argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)            # run by its path: its folder's modules must not shadow any package
    sys.exit(main(sys.argv[1:]))
