"""`tunebench model convert --gguf FILE --out DIR`: a GGUF checkpoint (LLaMA architecture) as a Hugging Face
folder, once; runs then load it in seconds with model.name=DIR instead of dequantizing the GGUF every time.

    tunebench model convert --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2-135m
    tunebench run --config smollm2 model.name=models/smollm2-135m

The folder holds fp32 safetensors, config.json and the tokenizer (save_pretrained), checked before it is
renamed into place: it reloads to the GGUF's tokens and logits. --out must not exist (never overwritten).
"""

from __future__ import annotations

import argparse
import sys

SHIPPED_CONFIG = "smollm2"   # the shipped experiment config for a converted folder (configs/experiments/)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="convert a GGUF checkpoint into a Hugging Face folder that loads in seconds",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="model_verb", metavar="ACTION", required=True)
    conv = verbs.add_parser("convert", help="write a GGUF file (LLaMA architecture) as an fp32 Hugging Face folder")
    conv.add_argument("--gguf", required=True, metavar="FILE", help="the .gguf file")
    conv.add_argument("--out", required=True, metavar="DIR",
                      help="folder to create (must not exist), e.g. models/smollm2-135m")
    conv.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    from tunebench.convert import convert_gguf

    def note(line: str) -> None:
        print(f"tunebench: model convert: {line}", file=sys.stderr, flush=True)

    c = convert_gguf(args.gguf, args.out, log=note)
    check = "identical" if c.max_logit_diff == 0 else f"max diff {c.max_logit_diff:.2g}"
    print(f"converted {c.gguf.name}: {c.parameters:,} parameters ({c.architecture}), float32, in {c.seconds:.1f} s "
          f"(reloaded logits {check}) -> {c.out}; use it: tunebench run --config {SHIPPED_CONFIG} "
          f"model.name={c.out}")
    return 0
