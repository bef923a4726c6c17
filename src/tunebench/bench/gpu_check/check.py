"""The orchestrator (`GpuCheck`): runs the parts in order under the time budget and keeps the report, written
into OUT_DIR after each part."""

from __future__ import annotations

import shutil
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tunebench.bench.formulas import format_bytes
from tunebench.bench.gpu_check.batch_search import memory_batch_plan, search_batch, usable_memory_bytes
from tunebench.bench.gpu_check.budget import Budget, PartBudget
from tunebench.bench.gpu_check.build import build_on_device, load_base_on_device
from tunebench.bench.gpu_check.compile_child import run_child
from tunebench.bench.gpu_check.determinism import deterministic_algorithms
from tunebench.bench.gpu_check.log import CheckLog, _stderr, device_name
from tunebench.bench.gpu_check.modes import PARTS, STUDY_MODEL, SYNTHETIC_TASK, Mode
from tunebench.bench.gpu_check.real_run import summarize_run
from tunebench.bench.gpu_check.sdpa import probe_sdpa
from tunebench.bench.gpu_check.synthetic import special_ids_floor, synthetic_batch
from tunebench.bench.gpu_check.targets import evaluate_targets
from tunebench.bench.gpu_check.training import estimate_s, measure_training
from tunebench.bench.measure import sync_device
from tunebench.config import METHODS, Config, get_dotted, with_overrides
from tunebench.data.tasks import get_task
from tunebench.io import atomic_write_json
from tunebench.system import exception_line, free_memory, is_out_of_memory

JSON_FILE = "gpu_check.json"
LOG_FILE = "gpu_check.log"
REPORT_FILES = ("report.html", "summary.md")   # copied from the real runs' report into OUT_DIR


class GpuCheck:
    """Runs the parts in order under the budget and keeps the report (rewritten into OUT_DIR after each part)."""

    def __init__(self, base_cfg: Config, out_dir: Path, mode: Mode, overrides: dict[str, Any],
                 model_dir: Path | None, glue_dir: Path | None, budget_s: float | None, device: str,
                 echo: Callable[[str], None] | None = _stderr, *, work: Path, determinism: dict | None = None):
        self.mode, self.device, self.out = mode, device, out_dir
        self.base_cfg, self.overrides = base_cfg, overrides
        self.model_dir, self.glue_dir = model_dir, glue_dir
        self.work = work                          # the scratch folder (make_scratch), outside OUT_DIR
        self.task = get_task(SYNTHETIC_TASK)
        self.cfg = self._synthetic_config()
        self._run_config()                        # its overrides validated before anything is written
        from tunebench.model import load_tokenizer
        from tunebench.precision import resolve_policy
        from tunebench.train import check_switches

        check_switches(self.cfg, device)          # a precision or switch this machine cannot run: one line, exit 2
        self.log = CheckLog(out_dir / LOG_FILE, echo)
        self.budget = Budget(mode.total_budget_s if budget_s is None else budget_s)
        # a smaller total (--gpu-check-budget) scales every share down with it; a larger one leaves them
        self.share_scale = min(1.0, self.budget.total_s / mode.total_budget_s) if mode.total_budget_s else 1.0
        self.determinism = determinism or {}
        self.tokenizer = load_tokenizer(self.cfg)
        self.policy = resolve_policy(self.cfg, device)
        self.methods = list(METHODS)
        self.failed_notes: list[str] = []        # findings that fail a part without stopping it
        self.report: dict[str, Any] = {
            "schema": 1, "kind": "gpu_check", "mode": mode.name, "complete": False,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "budget_s": self.budget.total_s,
            "env": {**self._env(), "determinism": self.determinism, "scratch": str(work)},
            "model": self._model_record(), "parts": {},
            "sdpa": {}, "sanity": {}, "throughput": {}, "task_lengths": {}, "real_run": {}, "batch_search": {},
            "variants": {},
            "summary": {}, "targets": {},
        }

    # ------------------------------------------------ configuration

    def _synthetic_config(self) -> Config:
        m = self.mode
        updates: dict[str, Any] = {"model.name": "tiny", "task": SYNTHETIC_TASK, "training.precision": m.precision,
                                   "tracking.backend": "none", "output_dir": str(self.work / "results")}
        updates.update({f"model.tiny.{k}": v for k, v in m.tiny.items()})
        if m.max_length:
            updates["model.max_length"] = m.max_length
        cfg = with_overrides(self.base_cfg, updates)
        return with_overrides(cfg, self.overrides) if self.overrides else cfg

    def _run_config(self) -> Config:
        """The real run's config: the user's config (its own model.tiny when no checkpoint is given), the real
        checkpoint, RTE from the GLUE folder or the builtin task, run_steps steps, no tracker."""
        m = self.mode
        updates: dict[str, Any] = {
            "model.name": str(self.model_dir) if self.model_dir else "tiny", "task": SYNTHETIC_TASK,
            "data.source": "local" if self.glue_dir else "builtin", "data.dir": str(self.work / "data"),
            "output_dir": str(self.work / "runs"), "experiment": "gpu-check", "training.max_steps": m.run_steps,
            "training.eval_steps": m.run_eval_steps, "tracking.backend": "none", "training.precision": m.precision,
            **m.run_overrides}
        if self.glue_dir:
            updates["data.glue_dir"] = str(self.glue_dir)
        cfg = with_overrides(self.base_cfg, updates)
        return with_overrides(cfg, self.overrides) if self.overrides else cfg

    def _env(self) -> dict:
        from tunebench.bench.measure import environment
        from tunebench.system import PACKAGES, package_version

        return {**environment(self.device), "cuda": torch.version.cuda,
                "packages": {p: package_version(p) for p in (*PACKAGES, "pydantic", "pandas")}}

    def _model_record(self) -> dict:
        c = self.cfg
        return {"architecture": f"{STUDY_MODEL} shapes at random init" if self.mode.name == "gpu" else "tiny",
                "tiny": c.model.tiny.model_dump(), "max_length": c.model.max_length,
                "batch": c.training.per_device_train_batch_size, "precision": self.policy.as_dict(),
                "synthetic_task": SYNTHETIC_TASK, "overrides": self.overrides}

    # ------------------------------------------------ running

    def run(self) -> dict:
        self.log(f"gpu check ({self.mode.name}) on {self.report['env']['device_name']}: budget "
                 f"{self.budget.total_s:.0f} s; model {self.report['model']['architecture']}, "
                 f"{self.cfg.training.per_device_train_batch_size} x {self.cfg.model.max_length}, "
                 f"{self.policy.name}")
        steps = {"sdpa": self._sdpa, "sanity": self._sanity, "throughput": self._throughput,
                 "task_lengths": self._task_lengths, "real_run": self._real_run,
                 "batch_search": self._batch_search, "variants": self._variants,
                 "torch_compile": self._torch_compile}
        try:
            for name in PARTS:
                self._part(name, steps[name])
        except BaseException as e:        # SystemExit from SIGTERM / SIGHUP, KeyboardInterrupt: what ran is kept
            self.report["interrupted"] = f"{type(e).__name__}: {e}".rstrip(": ")
            self.log(f"interrupted ({self.report['interrupted']}): gpu_check.json keeps the parts that ran")
            self._save()
            raise
        self._finish()
        return self.report

    def _part(self, name: str, fn: Callable[[PartBudget], bool]) -> None:
        share = self.mode.part_budget_s[name] * self.share_scale
        budget = self.budget.part(share, rest=name == PARTS[-1])
        record: dict[str, Any] = {"budget_s": round(budget.left(), 1)}
        if budget.left() < self.mode.min_start_s[name]:
            record.update(status="skipped", reason=f"time budget: {max(0.0, self.budget.remaining()):.1f} s of the "
                          f"total left, the part needs at least {self.mode.min_start_s[name]:g} s")
            self.log(f"{name}: skipped ({record['reason']})")
            self.report["parts"][name] = record
            self._save()
            return
        self.log(f"{name}: start (budget {budget.left():.0f} s)")
        t0, notes_before = time.perf_counter(), len(self.failed_notes)
        try:
            passed = fn(budget)
            status = "ok" if passed else "failed"
            if passed and budget.skipped:
                status = "partial"
        except Exception as e:  # noqa: BLE001 -- one part's failure must not stop the others
            status = "failed"
            record["reason"] = exception_line(e)[:500]
            self.log(f"{name}: FAILED: {record['reason']}\n{traceback.format_exc()}")
        free_memory()
        record.update(status=status, elapsed_s=round(time.perf_counter() - t0, 2))
        if len(self.failed_notes) > notes_before:
            record["findings"] = self.failed_notes[notes_before:]
        if budget.skipped:
            record["skipped"] = budget.skipped
            for s in budget.skipped:
                self.log(f"{name}: {s}")
        self.report["parts"][name] = record
        self.log(f"{name}: {status} in {record['elapsed_s']:.1f} s")
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.out / JSON_FILE, self.report)
        self.log.flush()

    def _finish(self) -> None:
        self.report["targets"] = evaluate_targets(self.report["summary"])
        self.report["wall_s"] = round(self.budget.elapsed(), 2)
        self.report["process_s"] = round(time.time() - _process_start(), 1)     # imports and start-up included
        self.report["ok"] = all(p["status"] in ("ok", "partial", "skipped") for p in self.report["parts"].values())
        self.report["complete"] = True
        for key, t in self.report["targets"].items():
            met = "n/a" if t["met"] is None else ("met" if t["met"] else "missed")
            value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
            self.log(f"target {key}: {value} ({t['op']} {t['threshold']}): {met}")
        self.log(f"done in {self.report['wall_s']:.1f} s ({self.report['process_s']:.0f} s since the process "
                 "started): " + ", ".join(
            f"{k} {v['status']}" for k, v in self.report["parts"].items()))
        self._save()

    def _measure(self, cfg: Config, *, batch: int, warmup: int, timed: int, profile: bool = False,
                 label: str = "") -> dict:
        workdir = self.work / "trainer" / f"{cfg.method}-{label or batch}"
        try:
            return measure_training(cfg, self.task, self.tokenizer, self.device, batch=batch, warmup=warmup,
                                    timed=timed, workdir=workdir, profile=profile)
        finally:
            free_memory()

    def _method_cfg(self, method: str, **updates: Any) -> Config:
        return with_overrides(self.cfg, {"method": method, **updates})

    # ------------------------------------------------ 1 SDPA

    def _sdpa(self, budget: PartBudget) -> bool:
        t = self.cfg.model.tiny
        dtype = self.policy.compute_dtype
        out = probe_sdpa(self.device, dtype, self.cfg.training.per_device_train_batch_size, t.num_attention_heads,
                         self.cfg.model.max_length, t.hidden_size // t.num_attention_heads, self.mode.sdpa_iters)
        self.report["sdpa"]["probe"] = out
        for case in ("causal", "padding_mask"):
            c = out[case]
            self.log(f"sdpa {case}: picks {c['chosen']} (deterministic: {c['chosen_deterministic']}); runs alone: "
                     + ", ".join(f"{n} {c[n]['fwd_bwd_ms']:.2f} ms" for n in c["runs"]))
        return bool(out["causal"]["runs"])

    # ------------------------------------------------ 2 sanity

    def _sanity(self, budget: PartBudget) -> bool:
        m = self.mode
        vocab = max(self.cfg.model.tiny.vocab_size or 0, len(self.tokenizer))
        batch = synthetic_batch(m.sanity_examples, m.sanity_len, vocab, special_ids_floor(self.tokenizer),
                                self.task.num_labels, self.cfg.training.seed)
        det = self.cfg.training.deterministic
        passed = True
        for method in self.methods:
            try:
                with deterministic_algorithms(det):          # as the Trainer's runs (full_determinism)
                    passed &= self._sanity_method(method, batch, budget, det)
            except RuntimeError as e:
                if not det or "determinis" not in str(e).lower():
                    raise
                # Deterministic algorithms failed (an op without a deterministic kernel, or cuBLAS without
                # CUBLAS_WORKSPACE_CONFIG): the finding, recorded; the checks then run without them.
                why = exception_line(e)[:300]
                free_memory()
                self.log(f"sanity {method}: deterministic algorithms FAILED: {why}; checking without them")
                self.failed_notes.append(f"sanity {method}: deterministic algorithms failed: {why}")
                self._sanity_method(method, batch, budget, False)
                self.report["sanity"][method]["deterministic_failed"] = why
                passed = False
        return passed

    def _sanity_method(self, method: str, batch: dict, budget: PartBudget, deterministic: bool) -> bool:
        from tunebench.methods import head_name
        from tunebench.sanity import inspect_gradient_flow, nonzero_lora_b, run_optimizer

        m = self.mode
        mcfg = self._method_cfg(method)
        entry: dict[str, Any] = {"examples": m.sanity_examples, "seq_len": m.sanity_len,
                                 "deterministic": deterministic}
        self.report["sanity"][method] = entry
        t0 = time.perf_counter()
        model = build_on_device(mcfg, self.task, self.tokenizer, self.device, self.policy)
        build_s = time.perf_counter() - t0
        nonzero_lora_b(model)
        t1 = time.perf_counter()
        gf = inspect_gradient_flow(model, batch, method, head_name(self.task), self.policy,
                                   run_optimizer(mcfg, self.task))
        sync_device(self.device)
        gf_s = time.perf_counter() - t1
        fwd_bwd_s = _time_forward_backward(model, batch, self.policy, self.device)   # warm: the step estimate
        del model
        free_memory()
        entry["gradient_flow"] = {**gf.as_dict(), "build_s": build_s, "s": gf_s, "fwd_bwd_s": fwd_bwd_s}
        self.log(f"sanity {method}: gradient flow {'passed' if gf.passed else 'FAILED'}: {gf.figure} "
                 f"{gf.detail}".rstrip())
        entry["overfitting"] = self._overfit(mcfg, method, batch, budget, build_s, fwd_bwd_s)
        if not gf.passed:
            self.failed_notes.append(f"{method} gradient flow: {gf.figure}: {gf.detail}")
        if entry["overfitting"]["passed"] is False:
            self.failed_notes.append(f"{method} overfitting: loss target {m.loss_target} not reached: "
                                     + "; ".join(f"lr {a['lr']:g}: loss {a['loss']:.3f} after {a['max_steps']} "
                                                 "steps" for a in entry["overfitting"]["attempts"]))
        return gf.passed and entry["overfitting"]["passed"] is not False

    def _overfit(self, mcfg: Config, method: str, batch: dict, budget: PartBudget, build_s: float,
                 fwd_bwd_s: float) -> dict:
        from tunebench.sanity import overfit_batch

        m = self.mode
        per_step = 1.5 * fwd_bwd_s                      # forward + backward + AdamW (a warm step), with margin
        attempts: list[dict] = []
        result: dict[str, Any] = {"loss_target": m.loss_target, "cap_steps": m.overfit_steps, "attempts": attempts,
                                  "passed": None}
        for lr in m.overfit_lrs[method]:
            cap = min(m.overfit_steps, int((budget.left() - build_s) / max(per_step, 1e-6)))
            if cap < min(10, m.overfit_steps):
                budget.fits(build_s + 10 * per_step, f"{method} overfitting at lr {lr:g}")
                break
            base = load_base_on_device(mcfg, self.task, self.tokenizer, self.device, self.policy)
            t0 = time.perf_counter()
            steps, loss, acc = overfit_batch(base, mcfg, self.task, self.tokenizer, batch, lr, cap, m.loss_target,
                                             self.policy)
            del base
            free_memory()
            attempts.append({"lr": lr, "max_steps": cap, "steps": steps, "loss": loss, "accuracy": acc,
                             "s": time.perf_counter() - t0})
            self.log(f"sanity {method}: overfitting at lr {lr:g}: "
                     + (f"loss {loss:.4f}, accuracy 100% after {steps} steps" if steps is not None
                        else f"not reached in {cap} steps (loss {loss:.3f}, accuracy {100 * acc:.0f}%)"))
            if steps is not None:
                result.update(passed=True, lr=lr, steps=steps, loss=loss)
                return result
        if attempts:
            result["passed"] = False
        return result

    # ------------------------------------------------ 3 throughput at the study's batch

    def _throughput(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        for method in self.methods:
            prev = next(iter(self.report["throughput"].values()), None)
            est = (estimate_s(prev, b, m.warmup_steps + m.timed_steps + 1) if prev is not None
                   else m.min_start_s["throughput"])
            if not budget.fits(est, f"{method} at batch {b}"):
                continue
            try:
                r = self._measure(self._method_cfg(method), batch=b, warmup=m.warmup_steps, timed=m.timed_steps,
                                  profile=True, label="study")
            except Exception as e:  # noqa: BLE001 -- see below
                if is_out_of_memory(e) or not self.cfg.training.deterministic:
                    raise
                # The study's default (deterministic kernels) failed: that is the finding, recorded; the summary
                # is then measured without it, so the other figures are not lost with it.
                failed_det = exception_line(e)[:300]
            else:
                failed_det = None
            if failed_det is not None:
                self.log(f"throughput {method}: training.deterministic=true FAILED: {failed_det}; measuring with "
                         f"false")
                r = self._measure(self._method_cfg(method, **{"training.deterministic": False}), batch=b,
                                  warmup=m.warmup_steps, timed=m.timed_steps, profile=True, label="study-nondet")
                r["deterministic_failed"] = failed_det
                self.failed_notes.append(f"throughput {method}: training.deterministic=true failed: {failed_det}")
            self.report["throughput"][method] = r
            self.report["summary"][method] = {"mfu": r["mfu"], "tokens_per_s": r["tokens_per_s"],
                                              "peak_memory_bytes": int(r["peak_memory_bytes"]),
                                              "device_name": device_name(self.device)}
            prof = r.get("profile", {})
            self.log(f"throughput {method} {b} x {r['seq_len']}: {1000 * r['step_time_s']:.1f} ms/step, "
                     f"{r['tokens_per_s']:,.0f} tokens/s, peak {format_bytes(r['peak_memory_bytes'])}, MFU "
                     f"{_pct(r['mfu'])}, "
                     f"compute {r['precision']['compute_dtype']}; SDPA in the profiled step: "
                     f"{prof.get('backends') or prof.get('error') or 'none seen'}")
        self.report["sdpa"]["training_step"] = {k: v.get("profile") for k, v in self.report["throughput"].items()}
        return not any("deterministic_failed" in r for r in self.report["throughput"].values())

    # ------------------------------------------------ 3b throughput at each task's real length

    def _task_lengths(self, budget: PartBudget) -> bool:
        """tokens/s at the study's batch and each task's mean tokens per example (the task table's mean_tokens:
        15 to 200, at least model.max_length's floor of 16): what a run of that task trains on (length-grouped batches,
        dynamic padding), unlike the padded 512 of the summary. `plan show --measured` turns the plan's tokens
        into hours with these (summary.<method>.tokens_per_s_by_task)."""
        from tunebench.tasks import TASKS

        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        for method in self.methods:
            ref = self.report["throughput"].get(method)
            if ref is None or method not in self.report["summary"]:
                budget.skipped.append(f"{method}: no study-batch measurement to scale from")
                continue
            by_task = self.report["task_lengths"].setdefault(method, {})
            for task, spec in TASKS.items():
                length = max(16, min(spec.mean_tokens, self.cfg.model.max_length))
                est = estimate_s(ref, b, m.search_warmup + m.search_timed, factor=length / ref["seq_len"])
                if not budget.fits(est, f"{method} {task} at {b} x {length}"):
                    continue
                r = self._measure(self._method_cfg(method, **{"model.max_length": length}), batch=b,
                                  warmup=m.search_warmup, timed=m.search_timed, label=f"len-{task}")
                by_task[task] = _brief(r)
                self.report["summary"][method].setdefault("tokens_per_s_by_task", {})[task] = r["tokens_per_s"]
                self.log(f"task_lengths {method} {task} {b} x {length}: {1000 * r['step_time_s']:.1f} ms/step, "
                         f"{r['tokens_per_s']:,.0f} tokens/s, MFU {_pct(r['mfu'])}")
        return True

    # ------------------------------------------------ 4 the real run

    def _real_run(self, budget: PartBudget) -> bool:
        from tunebench.bench.measure import isolated_run
        from tunebench.model import resolve_device
        from tunebench.precision import resolve_policy
        from tunebench.results import run_dir
        from tunebench.runner import run_one

        cfg = self._run_config()
        device = resolve_device()
        entry: dict[str, Any] = {"model": cfg.model.name, "task": cfg.task, "data_source": cfg.data.source,
                                 "glue_dir": cfg.data.glue_dir, "max_steps": cfg.training.max_steps,
                                 "deterministic": cfg.training.deterministic, "device": device, "runs": {}}
        self.report["real_run"] = entry
        policy = resolve_policy(cfg, device).as_dict()
        passed, last_s = True, 0.0
        for method in self.methods:                   # the first run's estimate: the part's minimum to start
            if not budget.fits(1.2 * last_s if last_s else self.mode.min_start_s["real_run"], f"real run {method}"):
                continue
            mcfg = with_overrides(cfg, {"method": method})
            t0 = time.perf_counter()
            with isolated_run(device):
                rec = run_one(mcfg, resume=False)
            free_memory()
            last_s = time.perf_counter() - t0
            run = summarize_run(rec, run_dir(mcfg), policy, last_s)
            entry["runs"][method] = run
            passed &= run["checks_passed"]
            if not run["checks_passed"]:
                self.failed_notes.append(
                    f"real run {method}: status {run['status']}" + (f" ({run['reason']})" if run["reason"] else "")
                    + f"; precision recorded {run['precision_recorded']}, as the policy {run['precision_as_policy']}"
                    + ("" if method != "lora" else f"; adapter saved {run['adapter_saved']}"))
            self.log(f"real run {method}: {run['status']} in {last_s:.1f} s"
                     + (f": test {run['primary_metric']} {run['test_metric']:.4f}, precision {run['precision']}, "
                        f"adapter saved: {run['adapter_saved']}" if run["status"] == "ok" else f": {run['reason']}"))
        if not entry["runs"]:
            return True
        entry["report"] = self._report(Path(cfg.output_dir) / cfg.experiment)
        if not entry["report"]["written"]:
            self.failed_notes.append(f"report: report.html or summary.md missing in {entry['report']['dir']}")
        return passed and entry["report"]["written"]

    def _report(self, results: Path) -> dict:
        from tunebench.report.build import build_report
        from tunebench.report.render import write_report

        t0 = time.perf_counter()
        out = results / "report"
        rep = build_report(results, out_dir=out)
        written = write_report(rep, out)
        copied = {}
        for name in REPORT_FILES:          # into OUT_DIR: the scratch goes when the check ends
            if written.get(name) and Path(written[name]).is_file():
                shutil.copyfile(written[name], self.out / name)
                copied[name] = self.out / name
        html, md = copied.get("report.html"), copied.get("summary.md")
        r = {"dir": str(self.out), "html": str(html), "summary_md": str(md),
             "written": bool(html and html.is_file() and md and md.is_file()),
             "runs_read": len(rep.runs), "n_ok": rep.n_ok, "verdicts": list(rep.verdicts.values()),
             "notes": list(rep.notes), "s": time.perf_counter() - t0}
        self.log(f"report: {r['runs_read']} runs read, {r['n_ok']} ok; {html}")
        return r

    # ------------------------------------------------ 5 the batch search

    def _batch_search(self, budget: PartBudget) -> bool:
        m, start = self.mode, self.cfg.training.per_device_train_batch_size
        vocab = max(self.cfg.model.tiny.vocab_size or 0, len(self.tokenizer))
        for method in self.methods:
            ref = self.report["throughput"].get(method)
            if ref is None:
                budget.skipped.append(f"{method}: skipped, no measurement at the study's batch to start from")
                continue
            steps = m.search_warmup + m.search_timed
            mcfg = self._method_cfg(method)
            free_memory()
            plan = memory_batch_plan(mcfg, vocab, self.policy, usable_memory_bytes(self.device), start, m.batch_cap)

            def fits(b: int, method: str = method, ref: dict = ref, steps: int = steps) -> bool:
                return budget.fits(estimate_s(ref, b, steps), f"{method} at batch {b}")

            def measure(b: int, mcfg: Config = mcfg) -> dict:
                return self._measure(mcfg, batch=b, warmup=m.search_warmup, timed=m.search_timed)

            # from and up to what the estimate says fits: the time goes to measuring, not to out-of-memory errors
            res = search_batch(measure, start, plan["largest"], fits, self.device, first=plan["largest"],
                               cap_reason=plan["limited_by"])
            res["memory_plan"] = plan
            best = res["at_largest"]
            if best is not None:
                estimated = plan["estimated_peak_bytes"].get(str(best["batch"]))
                res["estimated_over_measured_peak"] = (estimated / best["peak_memory_bytes"]
                                                       if estimated and best["peak_memory_bytes"] else None)
            self.report["batch_search"][method] = res
            self.log(f"batch search {method}: the memory estimate says up to {plan['largest']} fits "
                     f"({format_bytes(plan['usable_bytes'])} usable, limited by {plan['limited_by']}); largest "
                     f"fitting {res['largest_fitting']} (stopped by {res['stopped_by']})"
                     + (f": {best['tokens_per_s']:,.0f} tokens/s, peak {format_bytes(best['peak_memory_bytes'])} "
                        f"(estimated {format_bytes(estimated) if estimated else 'n/a'}), MFU {_pct(best['mfu'])}"
                        if best else ""))
        return True

    # ------------------------------------------------ 6 determinism and gradient checkpointing

    def _variants(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        det = self.cfg.training.deterministic
        variants = {"deterministic": ("training.deterministic", not det, self.methods),
                    "gradient_checkpointing": ("training.gradient_checkpointing",
                                               not self.cfg.training.gradient_checkpointing, self.methods)}
        if self.policy.name == "bf16-mixed" and self.cfg.model.dtype == "auto":
            # LoRA's frozen base in bf16 (adapters and head stay fp32): the memory the LoRA target asks about
            variants["frozen_bf16"] = ("model.dtype", "bfloat16", [m for m in self.methods if m == "lora"])
        ok = True
        for vname, (key, value, methods) in variants.items():
            rows: dict[str, Any] = {}
            self.report["variants"][vname] = rows
            for method in methods:
                ref = self.report["throughput"].get(method)
                if ref is None:
                    budget.skipped.append(f"{vname} {method}: skipped, no reference measurement")
                    continue
                factor = 1.5 if vname == "gradient_checkpointing" else 1.2
                if not budget.fits(estimate_s(ref, b, m.search_warmup + m.search_timed, factor),
                                   f"{vname}={value} {method}"):
                    continue
                row = self._variant_row(self._method_cfg(method, **{key: value}), ref, b, label=vname, key=key)
                row[_variant_text(get_dotted(self.cfg.model_dump(), key))] = _brief(ref)
                rows[method] = row
                ok &= row.get("works", True) or vname == "deterministic"
                self.log(f"{vname} {method}: " + _variant_line(row, value))
        return ok

    def _variant_row(self, cfg: Config, ref: dict, b: int, label: str, key: str) -> dict:
        """One variant at the study's batch against the reference measurement (`ref`), or why it does not run."""
        m = self.mode
        on = _variant_text(get_dotted(cfg.model_dump(), key))
        try:
            r = self._measure(cfg, batch=b, warmup=m.search_warmup, timed=m.search_timed, profile=True, label=label)
        except Exception as e:  # noqa: BLE001 -- "does not work" is the finding
            return {"works": False, "reason": exception_line(e)[:300], "value": on}
        return {"works": True, "value": on, on: _brief(r),
                "step_time_ratio": r["step_time_s"] / ref["step_time_s"],
                "peak_memory_ratio": r["peak_memory_bytes"] / ref["peak_memory_bytes"] if ref["peak_memory_bytes"]
                else None, "sdpa_backends": (r.get("profile") or {}).get("backends")}

    # ------------------------------------------------ 7 torch.compile

    def _torch_compile(self, budget: PartBudget) -> bool:
        m, b = self.mode, self.cfg.training.per_device_train_batch_size
        rows: dict[str, Any] = {}
        self.report["variants"]["torch_compile"] = rows
        compile_on = m.compile_in_child
        for method in m.compile_methods:
            ref = self.report["throughput"].get(method)
            if ref is None:
                budget.skipped.append(f"torch_compile {method}: skipped, no reference measurement")
                continue
            need = self.mode.min_start_s["torch_compile"]
            if not budget.fits(need, f"torch_compile {method}"):
                continue
            cfg = self._method_cfg(method, **{"training.torch_compile": compile_on})
            spec = {"config": cfg.model_dump(), "device": self.device, "batch": b, "warmup": m.search_warmup + 1,
                    "timed": m.search_timed, "workdir": str(self.work / "trainer" / f"{method}-compile"),
                    "profile": False}
            free_memory()
            res = run_child(spec, budget.left(), self.work / "child", f"compile-{method}")
            row: dict[str, Any] = {"torch_compile": compile_on, "child": _brief(res) if res["status"] == "ok" else res,
                                   "works": {"ok": True, "timed_out": None}.get(res["status"], False) if compile_on
                                   else None,
                                   "false": _brief(ref)}
            if not compile_on:
                row["note"] = ("smoke: the child-process harness ran without torch.compile (TorchInductor on a CPU "
                               "compiles for minutes)")
            if res["status"] == "ok":
                row["step_time_ratio"] = res["step_time_s"] / ref["step_time_s"]
                row["peak_memory_ratio"] = (res["peak_memory_bytes"] / ref["peak_memory_bytes"]
                                            if ref["peak_memory_bytes"] else None)
                row["first_step_s"] = res["first_step_s"]          # includes the compilation
                row["startup_s"] = res.get("startup_s")
            rows[method] = row
            if row["works"] is False:
                self.failed_notes.append(f"torch_compile {method}: {res['status']}: {res.get('reason')}")
            self.log(f"torch_compile={str(compile_on).lower()} {method} (child process): {res['status']}"
                     + (f": {1000 * res['step_time_s']:.1f} ms/step ({row['step_time_ratio']:.2f}x), first step "
                        f"{res['first_step_s']:.1f} s, peak {format_bytes(res['peak_memory_bytes'])}"
                        if res["status"] == "ok" else f": {res.get('reason')}"))
        return True


def _time_forward_backward(model: torch.nn.Module, batch: dict, policy, device: str) -> float:
    """Seconds of one more forward + backward of the sanity batch (after the gradient-flow check's: warm)."""
    model.train()
    sync_device(device)
    t0 = time.perf_counter()
    with policy.autocast_context(device):            # as the Trainer runs it (and the sanity checks)
        model(**{k: v.to(device) for k, v in batch.items()}).loss.backward()
    sync_device(device)
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def _process_start() -> float:
    import psutil

    return psutil.Process().create_time()


def _variant_text(value: Any) -> str:
    """A variant's setting as the report keys it: true / false, or the value itself (bfloat16)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _brief(m: dict) -> dict:
    """The figures of one measurement that a comparison needs."""
    keys = ("batch", "seq_len", "step_time_s", "tokens_per_s", "peak_memory_bytes", "mfu", "first_step_s", "build_s")
    return {k: m[k] for k in keys if k in m}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _variant_line(row: dict, value: Any) -> str:
    if not row.get("works", True):
        return f"={_variant_text(value)} does not work: {row['reason']}"
    on = row[row["value"]]
    return (f"={row['value']}: {1000 * on['step_time_s']:.1f} ms/step ({row['step_time_ratio']:.2f}x), peak "
            f"{format_bytes(on['peak_memory_bytes'])} ({row['peak_memory_ratio']:.2f}x)"
            + (f", SDPA {row['sdpa_backends']}" if row.get("sdpa_backends") is not None else ""))
