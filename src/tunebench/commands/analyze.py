"""`tunebench analyze PATH`: forgetting and weight-update spectra of finished runs -> analysis.json.

For every ok run folder below PATH (or PATH itself): the causal-LM loss on a held-out general text before
and after fine-tuning, and per adapted matrix the update's effective rank, stable rank and intruder
dimensions (tunebench.analysis). Full fine-tuning runs need their weights: training.save_full_model=true.
Exit 0 when every ok run was analysed or skipped for a stated reason, 1 when one failed, 2 on bad input.
"""

from __future__ import annotations

import argparse

from tunebench.errors import TunebenchError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="forgetting and weight-update spectra of finished runs (analysis.json)")
    p.add_argument("path", metavar="RESULTS_DIR_OR_RUN_DIR", help="a run folder, or a folder holding run folders")
    p.add_argument("--text", default="builtin", metavar="SPEC",
                   help="held-out text for the forgetting measure: builtin (default), a text file (paragraphs "
                        "separated by blank lines), or hub:NAME[:CONFIG][@SPLIT] (column 'text', split test)")
    p.add_argument("--top-k", type=int, default=10, metavar="K",
                   help="intruder dimensions are looked for among W_after's top K singular vectors (default 10)")
    p.add_argument("--eps", type=float, default=0.5,
                   help="a singular vector is an intruder when its |cos| with every base singular vector is "
                        "below EPS (default 0.5)")
    p.add_argument("--energy", type=float, default=0.9,
                   help="effective rank: singular values explaining this fraction of ||dW||_F^2 (default 0.9)")
    p.add_argument("--max-tokens", type=int, default=100_000, metavar="N",
                   help="use at most N tokens of the text (default 100000)")
    p.add_argument("--skip-existing", action="store_true", help="leave runs that already have analysis.json")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.set_defaults(func=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    # Imported here so that `tunebench --help` does not pay for torch and transformers.
    from tunebench.analysis.forgetting import load_text
    from tunebench.analysis.run import find_ok_runs, validate_settings

    validate_settings(args.top_k, args.eps, args.energy, args.max_tokens)
    ok, other = find_ok_runs(args.path)
    if not ok:
        raise TunebenchError(f"{args.path}: no finished (status ok) run folder found")
    text = load_text(args.text)  # once: the same text for every run
    counts = analyze_folders(ok, text, skip_existing=args.skip_existing, top_k=args.top_k, eps=args.eps,
                             energy=args.energy, max_tokens=args.max_tokens, device=args.device)
    failed = counts["failed"]
    if other:
        print(f"{len(other)} run folder(s) not ok (failed or unfinished): not analysed")
    return 1 if failed else 0


def analyze_folders(runs, text, *, skip_existing: bool, **settings) -> dict[str, int]:
    """Analyse each ok run folder (one line per run: its summary, or why it was skipped or failed) and save
    its analysis.json; {"done", "skipped", "failed"}. `settings`: analyze_run's keyword arguments."""
    from tunebench.analysis.run import ANALYSIS_FILE, RunSkipped, analyze_run, save_analysis

    counts = {"done": 0, "skipped": 0, "failed": 0}
    for run in runs:
        if skip_existing and (run / ANALYSIS_FILE).exists():
            print(f"{run.name}: skipped (analysis.json exists)")
            counts["skipped"] += 1
            continue
        try:
            record = analyze_run(run, text, **settings)
        except RunSkipped as e:
            print(f"{run.name}: skipped: {e}")
            counts["skipped"] += 1
            continue
        except TunebenchError as e:
            print(f"{run.name}: failed: {e}")
            counts["failed"] += 1
            continue
        save_analysis(run, record)
        print(_summary_line(run.name, record))
        counts["done"] += 1
    return counts


def _summary_line(name: str, record: dict) -> str:
    f, s = record["forgetting"], record["summary"]
    return (f"{name}: loss {f['loss_before']:.4f} -> {f['loss_after']:.4f} (delta {f['delta_loss']:+.4f}, "
            f"{f['tokens']} tokens); mean effective rank {s['mean_effective_rank']:.1f}, "
            f"intruders {s['intruders_total']} over {s['n_matrices']} matrices")
