"""One report per comparison: a results folder whose runs form several groups (report.groups) gets one report
per group, never one across them.

`build_reports(results_dir)` reads the folder once, groups its runs and analyses each group on its own
(build.analyze); `write_reports(reports, out_dir)` writes them:

  one group (the usual case)   the report folder exactly as render.write_report writes it
  several groups               <out_dir>/<group slug>/ a whole report folder per group, and at the top an index:
                               report.html and summary.md (each group: what differs, what it holds fixed, its runs,
                               its verdict words, links to its report), groups.json (the same as data, with each
                               group's run folders and the runs in no group)

A report folder written for the other case before is cleaned of what no longer applies: a mixed folder's
index and group folders when the folder is now one group; a single report's verdicts.json, tables and plots when
it now holds several (report.html and summary.md are replaced by the index).
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tunebench.io import atomic_write_json, atomic_write_text
from tunebench.report.build import Report, analyze, load_inputs
from tunebench.report.groups import Group, Grouping, differing_text, group_inputs, mixed_message, restrict_inputs
from tunebench.report.render import _HTML_HEAD, json_safe, markdown_table, write_report
from tunebench.results import STATUS_OK

GROUPS_FILE = "groups.json"


@dataclass
class GroupReport:
    group: Group
    report: Report


@dataclass
class Reports:
    results_dir: Path
    runs: pd.DataFrame              # every run read (the groups' runs and those in no group)
    grouping: Grouping
    items: list[GroupReport]        # one per group, in the grouping's order

    @property
    def mixed(self) -> bool:
        return self.grouping.mixed

    @property
    def single(self) -> Report:
        """The report of a folder that is one comparison."""
        if self.mixed:
            raise ValueError("the folder holds several comparisons: one report each (items)")
        return self.items[0].report


def build_reports(results_dir: str | Path, out_dir: str | Path | None = None, **analyze_kwargs: Any) -> Reports:
    """Read results_dir once (skipping out_dir) and analyse each comparison on its own; `analyze_kwargs` go to
    build.analyze (alpha, n_resamples, margin, with_figures, ...)."""
    return analyze_groups(load_inputs(results_dir, out_dir), **analyze_kwargs)


def analyze_groups(inputs: Any, **analyze_kwargs: Any) -> Reports:
    """build.analyze of each group's inputs (report.groups); the inputs themselves when they are one group."""
    grouping = group_inputs(inputs)
    if not grouping.mixed:
        items = [GroupReport(grouping.groups[0], analyze(inputs, **analyze_kwargs))]
    else:
        items = []
        for group in grouping.groups:
            report = analyze(restrict_inputs(inputs, group), **analyze_kwargs)
            report.group = group.name
            items.append(GroupReport(group, report))
    return Reports(inputs.results_dir, inputs.runs, grouping, items)


# ---------------------------------------------------------------- writing


def write_reports(reports: Reports, out_dir: str | Path, analysis_label: str | None = None) -> dict[str, Path]:
    """Write the report folder (module docstring); returns {name: path}: the single report's names, or
    "<slug>/<name>" for each group's files plus the index's report.html, summary.md and groups.json."""
    out = Path(out_dir)
    if not reports.mixed:
        _remove_group_folders(out, keep=set())
        return write_report(reports.single, out, analysis_label)
    written: dict[str, Path] = {}
    for item in reports.items:
        for name, path in write_report(item.report, out / item.group.slug, analysis_label).items():
            written[f"{item.group.slug}/{name}"] = path
    _remove_group_folders(out, keep={i.group.slug for i in reports.items})
    _remove_single_report(out)
    written[GROUPS_FILE] = atomic_write_json(out / GROUPS_FILE, groups_json(reports))
    written["summary.md"] = atomic_write_text(out / "summary.md", index_markdown(reports))
    written["report.html"] = atomic_write_text(out / "report.html", index_html(reports))
    return written


def _remove_group_folders(out: Path, keep: set[str]) -> None:
    """The group folders an earlier index (groups.json) listed, except `keep`; its groups.json when none is kept."""
    try:
        earlier = json.loads((out / GROUPS_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return
    for g in earlier.get("groups", []) if isinstance(earlier, dict) else []:
        slug = str(g.get("slug", "")) if isinstance(g, dict) else ""
        ours = slug and "/" not in slug and slug not in (".", "..", *keep)
        if ours and (out / slug / "report.html").is_file():
            shutil.rmtree(out / slug)
    if not keep:
        (out / GROUPS_FILE).unlink(missing_ok=True)


def _remove_single_report(out: Path) -> None:
    """An earlier single report's verdicts, tables and figures (its report.html and summary.md are overwritten
    by the index): they would compare across the groups."""
    verdicts = out / "verdicts.json"
    if not verdicts.is_file():
        return
    verdicts.unlink()
    for sub, suffixes in (("tables", (".csv", ".parquet")), ("plots", (".png",))):
        folder = out / sub
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.is_file() and f.suffix in suffixes:
                f.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()


# ---------------------------------------------------------------- the index


def _n_ok(runs: pd.DataFrame) -> int:
    return int((runs["status"] == STATUS_OK).sum())


def _words(report: Report) -> str:
    return "; ".join(f"{r.get('pair') or r.get('task')}: {r.get('word')}" for r in report.verdict_rows) or "–"


def _left_out_text(reports: Reports) -> str:
    n = len(reports.grouping.not_placed)
    if not n:
        return ""
    return (f"{n} run{'s are' if n > 1 else ' is'} in no comparison: {'they record' if n > 1 else 'it records'} no "
            "config (metrics.json from an earlier version, or none), so which comparison "
            f"{'they belong' if n > 1 else 'it belongs'} to cannot be told")


def groups_json(reports: Reports) -> dict[str, Any]:
    return json_safe({
        "results_dir": str(reports.results_dir),
        "differing_keys": reports.grouping.differing_keys,
        "groups": [{"name": i.group.name, "slug": i.group.slug, "differing": i.group.differing,
                    "context": i.report.context, "runs": len(i.report.runs), "ok": i.report.n_ok,
                    "verdicts": {str(r.get("pair") or r.get("task")): r.get("word") for r in i.report.verdict_rows},
                    "report": f"{i.group.slug}/report.html", "run_dirs": list(i.group.run_dirs)}
                   for i in reports.items],
        "not_placed": reports.grouping.not_placed,
    })  # type: ignore[return-value]


def index_lede(reports: Reports) -> str:
    n = len(reports.items)
    return (f"{len(reports.runs)} runs read, {_n_ok(reports.runs)} ok. They form {n} comparisons: "
            f"the runs differ in more than the method, its own settings and the seed: "
            f"{differing_text(reports.grouping)}. "
            "Each comparison has its own report; no run of one is compared with a run of another.")


def index_table(reports: Reports) -> pd.DataFrame:
    return pd.DataFrame([{"comparison": i.group.name, "holds fixed": i.report.context or "(not recorded)",
                          "runs": len(i.report.runs), "ok": i.report.n_ok, "verdicts": _words(i.report),
                          "report": i.group.slug} for i in reports.items])


def index_markdown(reports: Reports) -> str:
    table = index_table(reports)
    table["report"] = [f"[summary]({s}/summary.md), [page]({s}/report.html)" for s in table["report"]]
    parts = [f"# LoRA vs full fine-tuning: report for `{reports.results_dir}`\n", index_lede(reports) + "\n",
             markdown_table(table)]
    left = _left_out_text(reports)
    if left:
        parts += ["## Runs in no comparison\n", left + ":\n",
                  *[f"- {rd}" for rd in reports.grouping.not_placed], ""]
    return "\n".join(parts)


def index_html(reports: Reports) -> str:
    esc = html.escape
    heads = ["comparison", "holds fixed", "runs", "ok", "verdicts", "report"]
    rows = []
    for _, r in index_table(reports).iterrows():
        link = f'<a href="{esc(r["report"])}/report.html">{esc(r["report"])}/</a>'
        cells = [f"<td><b>{esc(r['comparison'])}</b></td>", f"<td>{esc(r['holds fixed'])}</td>",
                 f"<td>{r['runs']}</td>", f"<td>{r['ok']}</td>", f"<td>{esc(r['verdicts'])}</td>", f"<td>{link}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"
    body = [f"<h1>Does LoRA match full fine-tuning?</h1><p class=\"lede\">Results: "
            f"<code>{esc(str(reports.results_dir))}</code> &mdash; {esc(index_lede(reports))}</p>",
            f'<table class="tbl"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>']
    left = _left_out_text(reports)
    if left:
        body.append(f"<h2>Runs in no comparison</h2><p>{esc(left)}:</p><ul>"
                    + "".join(f"<li><code>{esc(rd)}</code></li>" for rd in reports.grouping.not_placed) + "</ul>")
    return _HTML_HEAD + "\n".join(body) + "\n</body></html>\n"


# ---------------------------------------------------------------- the command's lines


def mixed_lines(reports: Reports, written: dict[str, Path]) -> list[str]:
    """What `tunebench report` prints for a folder of several comparisons: one line per group naming what
    differs, its verdicts and notes indented, then the index."""
    n_bad = len(reports.runs) - _n_ok(reports.runs)
    lines = [f"{len(reports.runs)} runs read: {_n_ok(reports.runs)} ok, {n_bad} failed or unfinished",
             mixed_message(reports.grouping) + "; none compares across them"]
    for item in reports.items:
        r = item.report
        lines.append(f"[{item.group.name}] {len(r.runs)} runs, {r.n_ok} ok: "
                     f"{written.get(f'{item.group.slug}/report.html', item.group.slug)}")
        lines += [f"  {sentence}" for sentence in r.verdicts.values()]
        lines += [f"  note: {note}" for note in r.notes]
    left = _left_out_text(reports)
    if left:
        lines.append(f"note: {left}: {', '.join(reports.grouping.not_placed)}")
    lines.append(f"report: {written['report.html']} (the index of the {len(reports.items)} comparisons)")
    return lines
