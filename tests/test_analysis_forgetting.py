"""Held-out text sets, token windows and the causal-LM loss (tunebench.analysis.forgetting)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from shared_assets import STORIES
from tunebench.analysis.forgetting import (
    TextSet,
    forgetting_record,
    lm_loss_sum,
    load_text,
    parse_hub_spec,
    split_paragraphs,
    token_windows,
)
from tunebench.analysis.texts import BUILTIN_PARAGRAPHS, BUILTIN_TEXT
from tunebench.errors import TunebenchError

pytestmark = pytest.mark.usefixtures("one_thread")



class CountingTokenizer:
    """Token i of a text is 10 + its word index; BOS is 1 (a tokenizer with known output)."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [1] + [10 + i for i, _ in enumerate(text.split())]}


# ---------------------------------------------------------------- text sets


def test_builtin_text_is_a_few_kb_of_prose():
    text = load_text("builtin")
    assert text.documents == BUILTIN_PARAGRAPHS
    assert 3_000 < len(BUILTIN_TEXT) < 10_000
    assert len(text.sha1) == 40 and text.sha1 == load_text("builtin").sha1


def test_text_file_paragraphs_are_separated_by_blank_lines(tmp_path):
    f = tmp_path / "held_out.txt"
    f.write_text("First line\nstill the first.\n\n\n  Second paragraph.  \n\n", encoding="utf-8")
    text = load_text(str(f))
    assert text.documents == ("First line still the first.", "Second paragraph.")
    assert text.spec == str(f)
    assert split_paragraphs("") == ()


def test_missing_or_empty_text_file_is_one_clear_error(tmp_path):
    with pytest.raises(TunebenchError, match="file not found"):
        load_text(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(TunebenchError, match="holds no text"):
        load_text(str(tmp_path / "empty.txt"))


def test_hub_spec_parts():
    assert parse_hub_spec("hub:Salesforce/wikitext:wikitext-2-raw-v1@validation") == (
        "Salesforce/wikitext", "wikitext-2-raw-v1", "validation")
    assert parse_hub_spec("hub:org/name") == ("org/name", None, "test")


def test_hub_text_offline_is_one_line_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'org/name' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TunebenchError) as e:
        load_text("hub:org/name")
    message = str(e.value)
    assert "\n" not in message and "offline?" in message and "Couldn't reach" in message


def test_hub_text_keeps_non_empty_text_fields(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, config, split: datasets.Dataset.from_dict(
        {"text": ["", " A title ", "Some prose.\n", "   "]}))
    assert load_text("hub:org/name").documents == ("A title", "Some prose.")


# ---------------------------------------------------------------- windows


def test_windows_cut_each_document_and_respect_the_token_budget():
    tok = CountingTokenizer()
    docs = ["a b c d e f", "g", "h i"]                    # 7, 2, 3 ids with BOS
    windows = token_windows(tok, docs, block_size=3)
    assert windows == [[1, 10, 11], [12, 13, 14], [1, 10], [1, 10, 11]]   # the lone [15] predicts nothing
    assert token_windows(tok, docs, block_size=3, max_tokens=5) == [[1, 10, 11], [12, 13]]
    assert token_windows(tok, docs, block_size=100) == [[1, 10, 11, 12, 13, 14, 15], [1, 10], [1, 10, 11]]


# ---------------------------------------------------------------- loss


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_loss_sum_matches_the_models_own_loss(tiny_lm):
    window = [1, 5, 7, 9, 11, 13, 2]
    total, count = lm_loss_sum(tiny_lm, [window], pad_id=0)
    ids = torch.tensor([window])
    with torch.no_grad():
        hf_mean = tiny_lm(input_ids=ids, labels=ids).loss.item()   # mean over the 6 predicted tokens
    assert count == 6
    assert total / count == pytest.approx(hf_mean, rel=1e-6)


def test_padding_and_batching_do_not_change_the_loss(tiny_lm):
    windows = [[1, 5, 7, 9, 11, 13, 2], [1, 3, 4], [1, 8, 8, 8, 6]]
    batched = lm_loss_sum(tiny_lm, windows, pad_id=0, batch_size=3)
    one_by_one = [lm_loss_sum(tiny_lm, [w], pad_id=0) for w in windows]
    assert batched[1] == 6 + 2 + 4
    assert batched[0] == pytest.approx(sum(t for t, _ in one_by_one), rel=1e-5)


def test_forgetting_record_numbers():
    text = TextSet("builtin", ("x",))
    rec = forgetting_record(text, before=(10.0, 5), after=(12.5, 5))
    assert rec["tokens"] == 5
    assert rec["loss_before"] == 2.0 and rec["loss_after"] == 2.5
    assert rec["ppl_before"] == math.exp(2.0) and rec["ppl_after"] == math.exp(2.5)
    assert rec["delta_loss"] == 0.5
    with pytest.raises(ValueError, match="token counts differ"):
        forgetting_record(text, (1.0, 3), (1.0, 4))


def test_stories260k_loss_on_builtin_text_is_zero_forgetting_against_itself():
    """The real checkpoint: loss of a model against an identical copy is exactly equal (no forgetting)."""
    from transformers import AutoTokenizer

    model = LlamaForCausalLM.from_pretrained(str(STORIES)).eval()
    copy_ = LlamaForCausalLM.from_pretrained(str(STORIES)).eval()
    tok = AutoTokenizer.from_pretrained(str(STORIES))
    windows = token_windows(tok, BUILTIN_PARAGRAPHS, block_size=256)
    before = lm_loss_sum(model, windows, pad_id=tok.eos_token_id, batch_size=4)
    after = lm_loss_sum(copy_, windows, pad_id=tok.eos_token_id, batch_size=4)
    rec = forgetting_record(load_text("builtin"), before, after)
    assert rec["delta_loss"] == 0.0 and rec["ppl_before"] == rec["ppl_after"]
    assert 0 < rec["loss_before"] < math.log(512)       # better than uniform over the 512-token vocabulary
