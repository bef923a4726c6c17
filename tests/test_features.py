"""Features, pure: SQuAD windows with Hugging Face run_qa's doc_stride (the overlap between windows)."""

from __future__ import annotations

import pytest

from tunebench.errors import TunebenchError
from tunebench.features import _window_starts, encode_qa

BOS, EOS = 1, 2


class WordTokenizer:
    """One token per space-separated word (ids from 10), with character offsets: token counts by hand."""

    bos_token_id, eos_token_id = BOS, EOS

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        ids, offsets, pos = [], [], 0
        for word in text.split(" "):
            ids.append(10 + len(word))
            offsets.append((pos, pos + len(word)))
            pos += len(word) + 1
        return {"input_ids": ids, "offset_mapping": offsets} if return_offsets_mapping else {"input_ids": ids}


def record(n_context: int, n_question: int, answer_word: int | None = None) -> dict:
    words = [f"w{i}" for i in range(n_context)]
    context = " ".join(words)
    answers = {"text": [], "answer_start": []}
    if answer_word is not None:
        answers = {"text": [words[answer_word]], "answer_start": [len(" ".join(words[:answer_word])) + 1]}
    return {"id": "q1", "title": "t", "context": context, "question": " ".join(["q"] * n_question),
            "answers": answers}


def test_windows_overlap_by_doc_stride():
    # max_length 128, a 24-token question: prefix bos + 24 + bos, eos at the end, so 101 context tokens a window.
    # A 448-token context at doc_stride 32 steps 69: starts 0, 69, 138, 207, 276, 345 and the last, 347.
    feats = encode_qa([record(448, 24, answer_word=400)], WordTokenizer(), 128, 32)
    assert len(feats) == 7
    assert all(f["length"] == 128 for f in feats)
    starts = [f["offset_mapping"][26][0] for f in feats]   # first context token's character offset
    words = [len(" ".join(f"w{i}" for i in range(k))) + (k > 0) for k in (0, 69, 138, 207, 276, 345, 347)]
    assert starts == words
    # the answer (word 400) lies wholly in the windows starting at 345 and 347 only
    assert [f["start_positions"] != f["null_index"] for f in feats] == [False] * 5 + [True, True]
    assert _window_starts(448, 101, 32) == [0, 69, 138, 207, 276, 345, 347]


def test_doc_stride_at_least_the_context_budget_is_refused_when_windows_are_needed():
    # the bug this guards: a stride >= the budget became a step of 1, 348 windows for this context
    with pytest.raises(TunebenchError) as e:
        encode_qa([record(448, 24)], WordTokenizer(), 128, 101)
    assert str(e.value) == ("qa.doc_stride = 101 is not below the context budget of 101 tokens of question q1 "
                            "(model.max_length = 128 less its 27 question and special tokens), whose 448-token "
                            "context needs windows: lower qa.doc_stride")
    assert len(encode_qa([record(448, 24)], WordTokenizer(), 128, 100)) == 348   # step 1: allowed, but costly
    assert len(encode_qa([record(101, 24)], WordTokenizer(), 128, 120)) == 1      # fits: the stride is unused
    with pytest.raises(ValueError, match="leaves no step"):
        _window_starts(448, 101, 101)


def test_max_length_without_room_for_the_context_is_one_line():
    with pytest.raises(TunebenchError, match="model.max_length = 16 leaves no room for the context of question q1"):
        encode_qa([record(40, 10)], WordTokenizer(), 16, 4)


def _word_level(template: bool):
    """A fast tokenizer over a few words, with Llama's pair template (<s> before each text) or with none (as
    GPT-2-style BPE tokenizers such as SmolLM2's have)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "the", "cat", "sat", "a", "dog", "ran"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if template:
        core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                            special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.pad_token = tok.eos_token
    return tok


@pytest.mark.parametrize("template", [True, False])
def test_a_pairs_two_texts_are_always_separated_by_one_token(template):
    from tunebench.features import encode_classification, pair_separator

    tok = _word_level(template)
    pair = [{"text_a": "the cat sat", "text_b": "a dog ran", "label": 1}]
    single = [{"text_a": "the cat sat", "text_b": None, "label": 0}]
    ids = encode_classification(pair, tok, 32)[0]["input_ids"]
    if template:       # the template marks the boundary: nothing added, exactly as before
        assert pair_separator(tok) is None and ids == [1, 3, 4, 5, 1, 6, 7, 8]
    else:              # no template: the bos token between the texts, one token
        assert pair_separator(tok) == "<s>" and ids == [3, 4, 5, 1, 6, 7, 8]
    assert encode_classification(single, tok, 32)[0]["input_ids"] == ([1] if template else []) + [3, 4, 5]
    truncated = encode_classification(pair, tok, 6 if template else 5)[0]["input_ids"]
    assert len(truncated) == (6 if template else 5) and 1 in truncated[1:]     # longest-first keeps the boundary
