"""Forgetting: causal-LM loss and perplexity on a held-out general text, before and after fine-tuning.

"LoRA learns less and forgets less" (Biderman et al., 2024): fine-tuning degrades the base model's general
ability, full fine-tuning more than LoRA. We measure it on the model's own language-modelling head, so the
classification / QA head plays no part: the same text, the same tokenizer and the same LM head before and
after, only the backbone weights differ (how the LM head is chosen: tunebench.analysis.run).

Definitions (per text set):
  windows    each document is tokenized on its own (with the tokenizer's BOS) and cut into consecutive
             windows of at most block_size tokens; a window predicts its tokens 2..n (the first is context)
  loss       mean token negative log-likelihood (nats) over the predicted, non-pad tokens:
             sum over tokens / count, the same count before and after
  perplexity exp(loss)
  delta_loss loss_after - loss_before (> 0: the fine-tuned model models general text worse)
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from tunebench.analysis.texts import BUILTIN_NAME, BUILTIN_PARAGRAPHS
from tunebench.errors import TunebenchError

HUB_PREFIX = "hub:"
TEXT_SPEC_HELP = "builtin, a text file (paragraphs separated by blank lines), or hub:NAME[:CONFIG][@SPLIT]"


@dataclass(frozen=True)
class TextSet:
    """A held-out text: where it came from and its documents (paragraphs)."""

    spec: str
    documents: tuple[str, ...]

    @property
    def sha1(self) -> str:
        """Digest of the documents: two analyses used the same text exactly when these agree."""
        return hashlib.sha1("\n\n".join(self.documents).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- text sets


def load_text(spec: str) -> TextSet:
    """`builtin` | PATH | `hub:NAME[:CONFIG][@SPLIT]` (split default test, column `text`)."""
    if spec == BUILTIN_NAME:
        return TextSet(spec, BUILTIN_PARAGRAPHS)
    if spec.startswith(HUB_PREFIX):
        return TextSet(spec, load_hub_documents(spec))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TunebenchError(f"--text {spec!r}: file not found (expected {TEXT_SPEC_HELP})")
    documents = split_paragraphs(path.read_text(encoding="utf-8"))
    if not documents:
        raise TunebenchError(f"--text {spec!r}: the file holds no text")
    return TextSet(spec, documents)


def split_paragraphs(text: str) -> tuple[str, ...]:
    """Paragraphs separated by blank lines, each stripped; empty ones dropped."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append(" ".join(current))
            current = []
    if current:
        blocks.append(" ".join(current))
    return tuple(blocks)


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """`hub:Salesforce/wikitext:wikitext-2-raw-v1@test` -> ("Salesforce/wikitext", "wikitext-2-raw-v1", "test")."""
    body = spec.removeprefix(HUB_PREFIX)
    body, _, split = body.partition("@")
    name, _, config = body.partition(":")
    if not name:
        raise TunebenchError(f"--text {spec!r}: expected hub:NAME[:CONFIG][@SPLIT]")
    return name, config or None, split or "test"


def load_hub_documents(spec: str) -> tuple[str, ...]:
    """Non-empty `text` fields of a hub dataset split. Offline or unknown: one line that says what to do."""
    name, config, split = parse_hub_spec(spec)
    try:
        import datasets

        data = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # offline, unknown name, missing config: the datasets library raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TunebenchError(
            f"--text {spec}: cannot load {name} from the Hugging Face hub ({first}); offline? use --text "
            f"builtin or a local text file"
        ) from None
    if "text" not in data.column_names:
        raise TunebenchError(f"--text {spec}: the dataset has no 'text' column (columns: {data.column_names})")
    documents = tuple(t.strip() for t in data["text"] if isinstance(t, str) and t.strip())
    if not documents:
        raise TunebenchError(f"--text {spec}: the split holds no text")
    return documents


# ---------------------------------------------------------------- tokens


def token_windows(tokenizer, documents: tuple[str, ...] | list[str], block_size: int,
                  max_tokens: int | None = None) -> list[list[int]]:
    """Each document's token ids cut into windows of at most block_size; at most max_tokens ids in all
    (documents are taken in order, the last window is cut to fit). Windows of one token predict nothing
    and are dropped."""
    if block_size < 2:
        raise ValueError(f"block_size {block_size}: must be at least 2")
    windows: list[list[int]] = []
    budget = max_tokens if max_tokens is not None else math.inf
    for doc in documents:
        ids = tokenizer(doc, add_special_tokens=True)["input_ids"]
        for start in range(0, len(ids), block_size):
            window = ids[start:start + block_size][: int(min(block_size, budget))]
            if len(window) >= 2:
                windows.append(window)
                budget -= len(window)
            if budget <= 0:
                return windows
    return windows


def pad_batch(windows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask, both (B, T)."""
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)       # (B, T)
    mask = torch.zeros((len(windows), width), dtype=torch.long)            # (B, T)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = torch.tensor(w, dtype=torch.long)
        mask[i, : len(w)] = 1
    return ids, mask


# ---------------------------------------------------------------- loss


@torch.inference_mode()
def lm_loss_sum(model: torch.nn.Module, windows: list[list[int]], pad_id: int, batch_size: int = 8,
                device: str | torch.device = "cpu") -> tuple[float, int]:
    """Sum of next-token negative log-likelihoods (nats) over the predicted non-pad tokens, and their count."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        ids, mask = pad_batch(windows[i:i + batch_size], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (B, T, V)
        targets = ids[:, 1:]                                                # (B, T-1)
        keep = mask[:, 1:].bool()                                           # (B, T-1): non-pad targets
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view_as(targets)                                                  # (B, T-1)
        total += float(nll[keep].double().sum())
        count += int(keep.sum())
    return total, count


def forgetting_record(text: TextSet, before: tuple[float, int], after: tuple[float, int]) -> dict:
    """The analysis.json `forgetting` block from the (loss sum, token count) pairs before and after."""
    (sum_b, n_b), (sum_a, n_a) = before, after
    if n_b != n_a:
        raise ValueError(f"token counts differ before ({n_b}) and after ({n_a}): not the same text")
    if n_b == 0:
        raise TunebenchError(f"--text {text.spec}: no token to predict (the text is too short)")
    loss_b, loss_a = sum_b / n_b, sum_a / n_a
    return {
        "text": text.spec,
        "text_sha1": text.sha1,
        "documents": len(text.documents),
        "tokens": n_b,
        "loss_before": loss_b,
        "loss_after": loss_a,
        "ppl_before": _exp(loss_b),
        "ppl_after": _exp(loss_a),
        "delta_loss": loss_a - loss_b,
    }


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf
