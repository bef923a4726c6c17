"""Canonical records -> model features. Pure: records and a tokenizer in, feature dicts out (`Split`: a split's
records with their features).

Classification: the tokenizer's own single/pair template, truncated longest-first (a template that marks no
boundary between a pair's texts gets the bos token between them, `pair_separator`); the classifier reads the
last real token, which under causal attention is the only one that has seen the whole input.

SQuAD v2 for a causal decoder: [bos] question [bos] context-window [eos]. The question comes first so every
context token has seen it; long contexts go into overlapping windows (doc_stride tokens of overlap); the final
[eos] has seen the whole window and carries the "no answer" score (position 0 sees nothing under causal
attention, so a null score there would be a constant). Unanswerable windows point both labels at it.

A tokenizer without a bos token (Qwen2's) encodes question [eos] context-window [eos] (qa_special_tokens): its
models were trained without one, so nothing leads, and the boundary between question and context is the eos
token, the separator such models see between documents (as pair_separator uses it for classification). A
tokenizer without an eos token is refused in one line naming it: each window's last token is the null token.

doc_stride is the overlap between consecutive windows, as in Hugging Face's run_qa.py (`stride`): a window of
`budget` context tokens (max_length less the question and the special tokens) starts budget - doc_stride tokens
after the previous one. A doc_stride at least the budget would leave no step at all, so a context that
needs windows and an example whose budget is not above doc_stride is refused (TunebenchError, one line); the
config already refuses qa.doc_stride >= model.max_length for QA (tunebench.config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunebench.data.tasks import TaskSpec
from tunebench.errors import TunebenchError

if TYPE_CHECKING:
    from datasets import Dataset

MAX_QUESTION_TOKENS = 64


@dataclass
class Split:
    """One split's canonical records and their encoded features (the model's input), as training and
    evaluation (tunebench.evaluate) take them."""

    records: list[dict]
    features: list[dict]
    carve: dict | None = None      # validation: how it was carved from train (data.splits.Carve.as_dict())

    def dataset(self) -> Dataset:
        from datasets import Dataset

        return Dataset.from_list(model_columns(self.features))

    def sorted_by_length(self) -> Split:
        """Evaluation order: longest first, so dynamic padding wastes little and the order is fixed.

        Classification records stay aligned with their features; QA features carry their example id.
        """
        order = sorted(range(len(self.features)), key=lambda i: -self.features[i]["length"])
        features = [self.features[i] for i in order]
        if len(self.records) == len(self.features) and "example_id" not in self.features[0]:
            return Split([self.records[i] for i in order], features, self.carve)
        return Split(self.records, features, self.carve)


def encode_classification(records: list[dict], tokenizer, max_length: int) -> list[dict]:
    a = [r["text_a"] for r in records]
    b = [r["text_b"] for r in records] if records and records[0].get("text_b") is not None else None
    sep = pair_separator(tokenizer) if b else None
    if sep:
        b = [sep + text for text in b]
    enc = tokenizer(a, b, truncation=True, max_length=max_length) if b else \
        tokenizer(a, truncation=True, max_length=max_length)
    out = []
    for i, r in enumerate(records):
        ids = enc["input_ids"][i]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": int(r["label"]),
                    "length": len(ids)})
    return out


def pair_separator(tokenizer) -> str | None:
    """The token text to put before a pair's second text when the tokenizer's own pair template marks no
    boundary, else None. Llama's template puts <s> before each text; a GPT-2-style BPE tokenizer without a
    template (SmolLM2's) would join "premise" and "hypothesis" into one run of text. Then its bos token (eos
    when it has none) goes there, as Llama's <s> does: an added special token, so it stays one token."""
    if tokenizer.num_special_tokens_to_add(pair=True) > tokenizer.num_special_tokens_to_add(pair=False):
        return None
    return tokenizer.bos_token or tokenizer.eos_token


def encode_qa(records: list[dict], tokenizer, max_length: int, doc_stride: int) -> list[dict]:
    """One or more windows per question; each keeps `example_id`, `offset_mapping` (None off-context) and
    `null_index`, which post-processing needs."""
    lead, sep, eos = qa_special_tokens(tokenizer)
    features = []
    for r in records:
        q_ids = tokenizer(r["question"], add_special_tokens=False)["input_ids"][:MAX_QUESTION_TOKENS]
        ctx = tokenizer(r["context"], add_special_tokens=False, return_offsets_mapping=True)
        prefix = [*lead, *q_ids, sep]
        budget = max_length - len(prefix) - 1
        if budget < 8:
            raise TunebenchError(f"model.max_length = {max_length} leaves no room for the context of question "
                                 f"{r['id']}")
        if len(ctx["input_ids"]) > budget and doc_stride >= budget:
            raise TunebenchError(
                f"qa.doc_stride = {doc_stride} is not below the context budget of {budget} tokens of question "
                f"{r['id']} (model.max_length = {max_length} less its {len(prefix) + 1} question and special "
                f"tokens), whose {len(ctx['input_ids'])}-token context needs windows: lower qa.doc_stride")
        span = _answer_char_span(r)
        for start in _window_starts(len(ctx["input_ids"]), budget, doc_stride):
            end = min(start + budget, len(ctx["input_ids"]))
            ids = prefix + ctx["input_ids"][start:end] + [eos]
            offsets = [None] * len(prefix) + [list(o) for o in ctx["offset_mapping"][start:end]] + [None]
            null_index = len(ids) - 1
            s_pos, e_pos = _label_positions(span, offsets, null_index)
            features.append({
                "input_ids": ids, "attention_mask": [1] * len(ids), "length": len(ids),
                "start_positions": s_pos, "end_positions": e_pos,
                "example_id": r["id"], "offset_mapping": offsets, "null_index": null_index,
            })
    return features


def qa_special_tokens(tokenizer) -> tuple[list[int], int, int]:
    """(ids before the question, the question/context separator, the window's last token) of the QA encoding:
    ([bos], bos, eos), or ([], eos, eos) for a tokenizer without a bos token. No eos token: TunebenchError."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if eos is None:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise TunebenchError(f"tokenizer {name}: no eos token, which the SQuAD encoding ends each window with "
                             f"(the no-answer position)")
    return ([bos], bos, eos) if bos is not None else ([], eos, eos)


def _window_starts(n_tokens: int, budget: int, doc_stride: int) -> list[int]:
    """Token offsets of windows of `budget` tokens overlapping by `doc_stride` (HF run_qa semantics); the last
    window ends at the context's end. Needs doc_stride < budget when n_tokens > budget (encode_qa checks)."""
    if n_tokens <= budget:
        return [0]
    step = budget - doc_stride
    if step < 1:
        raise ValueError(f"doc_stride {doc_stride} leaves no step in a window of {budget} tokens")
    starts = list(range(0, n_tokens - budget, step))
    return starts + [n_tokens - budget]


def _answer_char_span(record: dict) -> tuple[int, int] | None:
    answers = record["answers"]
    if not answers["text"]:
        return None
    start = int(answers["answer_start"][0])
    return start, start + len(answers["text"][0])


def _label_positions(span, offsets: list, null_index: int) -> tuple[int, int]:
    """Token positions of the first gold answer when it lies wholly inside the window, else the null token."""
    if span is None:
        return null_index, null_index
    s_char, e_char = span
    ctx_positions = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx_positions or offsets[ctx_positions[0]][0] > s_char or offsets[ctx_positions[-1]][1] < e_char:
        return null_index, null_index
    s_tok = next(i for i in ctx_positions if offsets[i][1] > s_char)
    e_tok = next(i for i in reversed(ctx_positions) if offsets[i][0] < e_char)
    return s_tok, e_tok


def encode(task: TaskSpec, records: list[dict], tokenizer, max_length: int, doc_stride: int = 128) -> list[dict]:
    if task.is_qa:
        return encode_qa(records, tokenizer, max_length, doc_stride)
    return encode_classification(records, tokenizer, max_length)


MODEL_INPUTS = ("input_ids", "attention_mask", "labels", "start_positions", "end_positions")


def model_columns(features: list[dict]) -> list[dict]:
    """Only what the model's forward takes (and `length` for the length-grouped sampler)."""
    keep = (*MODEL_INPUTS, "length")
    return [{k: f[k] for k in keep if k in f} for f in features]
