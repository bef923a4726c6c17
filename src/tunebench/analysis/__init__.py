"""Beyond accuracy: what each method forgets, and how their weight updates differ.

Modules (the pure ones take values and return values; only `run` reads and writes files):
  spectrum    energy rank (90%), effective rank (Roy-Vetterli), stable rank and intruder dimensions of a weight
              update (matrices in, numbers out)
  forgetting  held-out text sets, token windows and the causal-LM loss before / after fine-tuning
  texts       the builtin held-out text (general English prose written for tunebench) and the paragraphs the
              report's methods section gives the analysis (analysis_methods_text)
  run         analyze_run(run_dir, text_spec, top_k, eps) -> the analysis.json record; save_analysis;
              load_analysis_pairs(results_dir) -> [(metrics.json, analysis.json)]
  tables      analysis_tables(pairs) -> {"runs", "modules", "layers", "by_rank"} DataFrames
  figures     analysis_figures(pairs) -> {name: matplotlib Figure}
CLI: `tunebench analyze RESULTS_DIR_OR_RUN_DIR [--text builtin|PATH|hub:NAME] [--top-k 10] [--eps 0.5]`.

analysis.json (one per analysed run folder, written atomically):
  {"schema": 2, "run_id", "task", "method", "lora_r", "model",
   "settings": {"text", "top_k", "eps", "energy", "max_tokens", "block_size", "weights_dtype", "device"},
   "lm_head": "tied" | "base" | "random",
   "forgetting": {"text", "text_sha1", "documents", "tokens", "loss_before", "loss_after", "ppl_before",
                  "ppl_after", "delta_loss"},
   "spectrum": [{"module": "model.layers.0.self_attn.q_proj", "layer": 0, "type": "q_proj",
                 "group": "attention" | "mlp", "shape": [d_out, d_in], "energy_rank", "effective_rank",
                 "stable_rank", "intruders", "top_singular_values": [first 16 of dW], "fro_norm",
                 "rel_fro_norm"}, ...],
   "summary": {"n_matrices", "mean_energy_rank", "max_energy_rank", "mean_effective_rank", "mean_stable_rank",
               "intruders_total", "fro_norm_total", "by_group": {"attention": {...}, "mlp": {...}}},
   "elapsed_s"}
energy_rank is the rank holding settings.energy (0.9) of ||dW||_F^2 (Biderman et al., 2024); effective_rank is
Roy and Vetterli's (2007) exp(entropy of s / sum s) (definitions in tunebench.analysis.spectrum). Schema 1
(before the two were told apart) stored the energy rank as effective_rank / mean_effective_rank /
max_effective_rank; tunebench.analysis.tables.upgrade_analysis reads it as the energy rank, Roy-Vetterli unknown.
"""
