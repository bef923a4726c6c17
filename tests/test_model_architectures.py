"""Models beyond Llama: each task model runs on the checkpoint's own backbone, or is refused in one line.

Tiny random causal-LM checkpoints (2 layers, hidden 32, the builtin vocabulary) of Llama, Mistral (sliding
window), Qwen2 (q/k/v biases) and Gemma (scaled embedding, (1 + weight) norms, tied head), every weight drawn
away from its init so that a dropped bias or a foreign norm shows. Both heads are compared with transformers'
own backbone class loaded from the same folder.
"""

from __future__ import annotations

import json

import pytest
import torch
import transformers as tf
from safetensors.torch import load_file, save_file

from tunebench.config import load_config
from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError
from tunebench.model import check_loading_info, load_model, load_tokenizer, quiet_transformers

SHAPE = dict(vocab_size=640, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256)
ARCHS = {   # config, causal LM (what the checkpoint is saved from), native backbone
    "llama": (tf.LlamaConfig(**SHAPE), tf.LlamaForCausalLM, tf.LlamaModel),
    "mistral": (tf.MistralConfig(**SHAPE, sliding_window=6), tf.MistralForCausalLM, tf.MistralModel),
    "qwen2": (tf.Qwen2Config(**SHAPE), tf.Qwen2ForCausalLM, tf.Qwen2Model),
    "gemma": (tf.GemmaConfig(**SHAPE, head_dim=8), tf.GemmaForCausalLM, tf.GemmaModel),
}
HEADS = ("sst2", "squad_v2")


def word_tokenizer(bos: bool = True):
    """A word-level fast tokenizer over the builtin vocabulary: Llama's specials (<s>, </s>, no pad), or none
    at all (no bos, no eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tunebench.data.builtin import VOCABULARY

    specials = ["<unk>", "<s>", "</s>"]
    core = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(specials + list(VOCABULARY))},
                                      unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def qwen2_tokenizer():
    """transformers' own Qwen2Tokenizer (byte-level BPE; no bos token, <|endoftext|> as eos and pad) over merges
    trained here on the builtin vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tunebench.data.builtin import VOCABULARY

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=SHAPE["vocab_size"] - 40, special_tokens=["<|endoftext|>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator([" ".join(VOCABULARY)] * 4, trainer)
    merges = json.loads(core.to_str())["model"]["merges"]
    return tf.Qwen2Tokenizer(vocab=core.get_vocab(), merges=[tuple(m) for m in merges])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """arch -> a folder holding the causal LM's checkpoint (Qwen2's with its tokenizer, which has no bos)."""
    out = {}
    for arch, (config, causal, _) in ARCHS.items():
        torch.manual_seed(0)
        model = causal(config)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        folder = tmp_path_factory.mktemp(arch)
        with quiet_transformers():
            model.save_pretrained(folder)
        if arch == "qwen2":
            qwen2_tokenizer().save_pretrained(folder)
        out[arch] = folder
    return out


def cfg_for(folder, head: str):
    return load_config([], [f"model.name={folder}", f"task={head}", "model.max_length=128", "qa.doc_stride=32"])


def load(folder, head: str):
    tok = word_tokenizer()
    tok.pad_token = tok.eos_token                          # as load_tokenizer sets it
    return load_model(cfg_for(folder, head), get_task(head), tok, device="cpu", dtype=torch.float32).eval()


def native(arch: str, folder):
    with quiet_transformers():
        return ARCHS[arch][2].from_pretrained(folder, dtype=torch.float32).eval()


def one_line_error(call) -> str:
    with pytest.raises(TunebenchError) as e:
        call()
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- the checkpoint's own backbone


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_the_backbone_computes_what_the_native_model_computes(checkpoints, arch, head):
    model, ref = load(checkpoints[arch], head), native(arch, checkpoints[arch])
    assert type(model.base_model) is type(ref)
    ids = torch.randint(3, SHAPE["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0                                        # right padding, as the collator pads
    with torch.no_grad():
        got = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        out = model(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-6)
    if head == "squad_v2":
        assert out.start_logits.shape == out.end_logits.shape == ids.shape
        start, end = model.qa_outputs(got).unbind(-1)
        torch.testing.assert_close(out.start_logits, start, rtol=0, atol=1e-6)
    else:
        assert out.logits.shape == (2, get_task(head).num_labels)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_no_checkpoint_weight_is_dropped(checkpoints, arch, head):
    model, ref = load(checkpoints[arch], head), native(arch, checkpoints[arch])
    got, want = model.base_model.state_dict(), ref.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    saved = load_file(checkpoints[arch] / "model.safetensors")
    prefix = "model."
    assert all(torch.equal(got[k.removeprefix(prefix)], v) for k, v in saved.items() if k.startswith(prefix))
    if arch == "qwen2":
        biases = [k for k in saved if k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias"))]
        assert len(biases) == 3 * SHAPE["num_hidden_layers"]
        assert all(got[k.removeprefix(prefix)].abs().sum() > 0 for k in biases)


def test_the_qa_model_is_named_for_its_architecture_and_keeps_the_head_name(checkpoints):
    model = load(checkpoints["qwen2"], "squad_v2")
    assert type(model).__name__ == "CausalQwen2ForQuestionAnswering"
    assert model.base_model_prefix == "model" and isinstance(model.qa_outputs, torch.nn.Linear)
    assert model.get_input_embeddings() is model.model.embed_tokens


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_on_each_qa_model_starts_at_the_base_and_trains_the_head(checkpoints, arch):
    from tunebench.methods import apply_method, count_parameters, expected_lora_trainable

    cfg = load_config([], [f"model.name={checkpoints[arch]}", "task=squad_v2", "method=lora"])
    base = load(checkpoints[arch], "squad_v2")
    ids = torch.randint(3, SHAPE["vocab_size"], (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = base(input_ids=ids).start_logits
    expected = expected_lora_trainable(base, cfg, get_task("squad_v2"))
    torch.manual_seed(0)
    lora = apply_method(base, cfg, get_task("squad_v2")).eval()
    with torch.no_grad():
        torch.testing.assert_close(lora(input_ids=ids).start_logits, want, rtol=0, atol=1e-6)   # B = 0 at init
    assert count_parameters(lora)["trainable"] == expected
    assert any("qa_outputs.modules_to_save" in n for n, p in lora.named_parameters() if p.requires_grad)


# ---------------------------------------------------------------- the load check, both ways


@pytest.mark.parametrize("head", HEADS)
def test_a_checkpoint_weight_the_model_has_no_place_for_is_refused_in_one_line(checkpoints, tmp_path, head):
    """A Llama checkpoint with an o_proj bias (Llama is built without one): no longer dropped silently."""
    folder = tmp_path / "llama"
    folder.mkdir()
    for f in checkpoints["llama"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.1.self_attn.o_proj.bias"] = torch.ones(SHAPE["hidden_size"])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    line = one_line_error(lambda: load(folder, head))
    assert "model.layers.1.self_attn.o_proj.bias" in line and "1 checkpoint weights" in line
    assert str(folder) in line


def test_benign_checkpoint_keys_are_named_apart_and_nothing_else_is():
    info = {"missing_keys": ["qa_outputs.weight", "qa_outputs.bias", "model.norm.weight"],
            "unexpected_keys": ["lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq",
                                "model.layers.0.self_attn.q_proj.bias", "model.lm_head.weight"]}
    report = check_loading_info(info, source="checkpoint")
    assert report.new_keys == ["qa_outputs.bias", "qa_outputs.weight"]
    assert report.missing_base_keys == ["model.norm.weight"]
    assert report.benign_keys == ["lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert report.unexpected_keys == ["model.layers.0.self_attn.q_proj.bias", "model.lm_head.weight"]


# ---------------------------------------------------------------- tokenizers without a bos token


def test_a_tokenizer_without_bos_encodes_squad_without_none_and_trains(checkpoints):
    from transformers import DataCollatorWithPadding

    from tunebench.data.builtin import generate
    from tunebench.features import encode, model_columns

    cfg = cfg_for(checkpoints["qwen2"], "squad_v2")
    tok = load_tokenizer(cfg)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert tok.bos_token is None and tok.eos_token == tok.pad_token == "<|endoftext|>"
    records = generate("squad_v2", 6, seed=0)
    feats = encode(get_task("squad_v2"), records, tok, cfg.model.max_length, cfg.qa.doc_stride)
    eos = tok.eos_token_id
    assert len(feats) == len(records)                    # one window each at this length
    for f, r in zip(feats, records, strict=True):
        q = tok(r["question"], add_special_tokens=False)["input_ids"]
        assert None not in f["input_ids"]
        assert f["input_ids"][: len(q) + 1] == [*q, eos]   # no leading token; eos between question and context
        assert f["input_ids"][-1] == eos and f["null_index"] == len(f["input_ids"]) - 1
        assert f["offset_mapping"][len(q)] is None and f["offset_mapping"][len(q) + 1] is not None
    answerable = [f for f in feats if f["start_positions"] != f["null_index"]]
    assert answerable
    for f, r in ((f, next(r for r in records if r["id"] == f["example_id"])) for f in answerable):
        s, e = f["offset_mapping"][f["start_positions"]][0], f["offset_mapping"][f["end_positions"]][1]
        assert r["context"][s:e].strip() == r["answers"]["text"][0]     # byte-level offsets keep the space
    rows = model_columns(feats)
    for row in rows:
        row.pop("length")
    batch = DataCollatorWithPadding(tok)(rows)
    model = load(checkpoints["qwen2"], "squad_v2")
    loss = model(**batch).loss
    assert torch.isfinite(loss)


def test_a_tokenizer_without_bos_or_eos_is_refused_in_one_line():
    from tunebench.data.builtin import generate
    from tunebench.features import encode_qa

    tok = word_tokenizer(bos=False)
    tok.name_or_path = "tiny-no-specials"
    line = one_line_error(lambda: encode_qa(generate("squad_v2", 1, seed=0), tok, 128, 32))
    assert line.startswith("tokenizer tiny-no-specials: no eos token")


# ---------------------------------------------------------------- architectures that cannot be built exactly


def _config_folder(tmp_path, config) -> str:
    folder = tmp_path / config.model_type
    config.save_pretrained(folder)
    return folder


UNSUPPORTED = {   # model type -> (config, what the line says)
    "bert": (lambda: tf.BertConfig(vocab_size=640, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=64), "non-causal attention (BertModel)"),
    "gemma": (lambda: tf.GemmaConfig(**SHAPE, head_dim=8, use_bidirectional_attention=True),
              "non-causal attention (GemmaModel)"),
    "t5": (lambda: tf.T5Config(vocab_size=640, d_model=32, d_ff=64, num_layers=1, num_heads=4),
           "is an encoder-decoder"),
    "gemma3": (lambda: tf.Gemma3Config(), "is multimodal"),
    "trocr": (lambda: tf.TrOCRConfig(vocab_size=640, d_model=32, decoder_layers=1, decoder_attention_heads=4,
                                     decoder_ffn_dim=64), "no AutoModel backbone"),
}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", UNSUPPORTED)
def test_an_architecture_that_cannot_be_built_exactly_is_refused_in_one_line(tmp_path, arch, head):
    """Refused from the config alone, before any weight is read (the folders hold no weights)."""
    make, says = UNSUPPORTED[arch]
    folder = _config_folder(tmp_path, make())
    cfg = cfg_for(folder, head)
    line = one_line_error(lambda: load_model(cfg, get_task(head), word_tokenizer(), device="cpu"))
    assert line.startswith(f"model {folder}: architecture {arch!r} ") and says in line


def test_an_architecture_transformers_does_not_know_is_refused_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no_such_arch"}))
    cfg = cfg_for(tmp_path, "squad_v2")
    line = one_line_error(lambda: load_model(cfg, get_task("squad_v2"), word_tokenizer(), device="cpu"))
    assert "cannot load" in line and "no_such_arch" in line
