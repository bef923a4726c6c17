"""One-time conversion of a LLaMA-architecture GGUF file into a Hugging Face folder: fp32 safetensors weights,
config.json and the tokenizer, written by `save_pretrained` of the model and tokenizer transformers loads from
the GGUF. Loading a GGUF dequantizes every weight on every run (tens of seconds to minutes); the folder loads in
seconds with model.name=DIR, bit for bit the same weights.

    tunebench model convert --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m

Bad input is one TunebenchError line, found before the expensive load: a missing file, a file that is not
GGUF, a GGUF whose `general.architecture` is not llama, an --out that exists (never overwritten). The folder
is written under a temporary name beside --out and renamed into place only once it is complete and reloads to
the same tokens and logits as the GGUF, so an interrupted or failed conversion leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tunebench.errors import TunebenchError
from tunebench.system import exception_line, first_line

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES = ("llama",)
# The round trip's check: the reloaded folder must give these tokens and logits (within LOGITS_ATOL; a
# faithful conversion gives exactly the same) as the model and tokenizer loaded from the GGUF.
CHECK_TEXT = "The film was not as good as the book, but the actors were great."
CHECK_PAIR = "Every actor was great."     # a sentence pair too: the tasks' premise / hypothesis inputs
LOGITS_ATOL = 1e-5


@dataclass(frozen=True)
class Conversion:
    gguf: Path
    out: Path
    architecture: str
    parameters: int
    seconds: float
    max_logit_diff: float     # reloaded folder vs GGUF on CHECK_TEXT (0.0 when bit-identical)


def gguf_architecture(path: Path) -> str:
    """`general.architecture` from the GGUF header (the header only: no tensor is read); a TunebenchError
    naming the file when it is missing, not a GGUF file, or a GGUF file without that key."""
    if not path.exists():
        raise TunebenchError(f"{path}: GGUF file not found")
    if not path.is_file():
        raise TunebenchError(f"{path}: not a file (give the .gguf file itself)")
    with path.open("rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise TunebenchError(f"{path}: not a GGUF file (it does not start with the bytes {GGUF_MAGIC.decode()})")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise TunebenchError("model convert needs the gguf package: pip install 'gguf>=0.19'") from None
    try:
        field = GGUFReader(path).get_field("general.architecture")
        architecture = None if field is None else str(field.contents())
    except Exception as e:  # noqa: BLE001 -- a truncated or corrupt header raises anything (ValueError, struct)
        raise TunebenchError(f"{path}: unreadable GGUF header ({first_line(e) or type(e).__name__})") from None
    if not architecture:
        raise TunebenchError(f"{path}: GGUF header has no general.architecture")
    return architecture


def convert_gguf(gguf: str | os.PathLike, out: str | os.PathLike, *, log=None) -> Conversion:
    """Write the Hugging Face folder `out` from the GGUF file `gguf` (see the module docstring). `log(line)`,
    when given, is told before the slow load starts."""
    start = time.perf_counter()
    gguf, out = Path(gguf), Path(out)
    architecture = gguf_architecture(gguf)
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise TunebenchError(f"{gguf}: GGUF architecture {architecture!r} is not LLaMA "
                             f"(general.architecture must be {' or '.join(map(repr, SUPPORTED_ARCHITECTURES))})")
    _refuse_existing(out)
    if log:
        log(f"loading {gguf} ({architecture}): dequantizing every weight to float32 takes seconds to minutes")
    model, tokenizer = load_gguf(gguf)
    parameters = model.num_parameters()

    missing_parents = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    created = False
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
            created = True
            save_folder(tmp, model, tokenizer)
        except OSError as e:
            raise TunebenchError(f"{out}: cannot write the converted model ({first_line(e) or type(e).__name__})") \
                from None
        diff = check_round_trip(tmp, model, tokenizer, gguf)
        _refuse_existing(out)                     # appeared while converting: still never overwritten
        os.replace(tmp, out)
    except BaseException:
        if created:
            shutil.rmtree(tmp, ignore_errors=True)
        for parent in missing_parents:            # deepest first; stops at the first one not empty
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return Conversion(gguf=gguf, out=out, architecture=architecture, parameters=parameters,
                      seconds=time.perf_counter() - start, max_logit_diff=diff)


def save_folder(folder: Path, model, tokenizer) -> None:
    """save_pretrained of both into `folder`: model.safetensors (a tied lm_head stored once, as embed_tokens),
    config.json, generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja when the
    GGUF has one. Every file gets the usual permissions (0666 less the umask): safetensors writes its file with
    mode 0600, which would leave the weights unreadable to others in a shared models/ folder."""
    from tunebench.model import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _refuse_existing(out: Path) -> None:
    if out.exists() or out.is_symlink():
        raise TunebenchError(f"{out}: already exists; model convert never overwrites (remove it or choose another "
                             "--out)")


def load_gguf(gguf: Path):
    """(causal LM in float32 with every weight dequantized and no quantizer left attached, tokenizer) from the
    GGUF file; a TunebenchError line when transformers cannot load it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from tunebench.model import quiet_transformers

    folder, name = str(gguf.parent), gguf.name
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            # dequantize=True: dense float32 weights even where transformers could keep GGUF blocks (a GgufLinear
            # with a matmul kernel), which save_pretrained cannot write.
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                         quantization_config=GgufConfig(dequantize=True))
    except Exception as e:  # noqa: BLE001 -- a bad file raises anything from ValueError to KeyError
        raise TunebenchError(f"{gguf}: cannot load with transformers ({exception_line(e)})") from None
    # transformers marks a GGUF-loaded model quantized (GgufHfQuantizer) and refuses to save it ("not
    # serializable"), and config.json would carry quantization_config {quant_method: gguf}, making every later
    # load look for a GGUF file. The weights are plain float32 tensors by now: detach both.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    not_fp32 = [k for k, v in model.state_dict().items() if v.dtype != torch.float32]
    if not_fp32:
        raise TunebenchError(f"{gguf}: {len(not_fp32)} weights did not dequantize to float32 "
                             f"(first: {not_fp32[0]})")
    model.eval()
    return model, tokenizer


def check_round_trip(folder: Path, model, tokenizer, gguf: Path) -> float:
    """Reload `folder` and compare it with the GGUF-loaded model and tokenizer: the same token ids for CHECK_TEXT
    alone and paired with CHECK_PAIR, and logits on CHECK_TEXT within LOGITS_ATOL (TunebenchError otherwise).
    Returns the largest logit difference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunebench.model import quiet_transformers

    with quiet_transformers():
        saved_tokenizer = AutoTokenizer.from_pretrained(folder)
        saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    for texts in [(CHECK_TEXT,), (CHECK_TEXT, CHECK_PAIR)]:
        ids, saved_ids = tokenizer(*texts)["input_ids"], saved_tokenizer(*texts)["input_ids"]
        if ids != saved_ids:
            raise TunebenchError(f"{gguf}: the converted tokenizer splits text differently from the GGUF's "
                                 f"({ids[:8]} vs {saved_ids[:8]}); nothing written")
    ids = tokenizer(CHECK_TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        diff = (model(input_ids=ids).logits - saved(input_ids=ids).logits).abs().max().item()
    if not diff <= LOGITS_ATOL:
        raise TunebenchError(f"{gguf}: the converted model's logits differ from the GGUF's by {diff:.3g} "
                             f"(> {LOGITS_ATOL:g}); nothing written")
    return diff

