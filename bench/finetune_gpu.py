"""LoRA finetuning throughput on one GPU, through the product's own finetune step.

Builds a randomly initialised Llama of about 1B parameters (Llama-3.2-1B's shape by default),
a synthetic chat dataset of fixed-length conversations, and runs `society_trainer.finetune` on it
(TRL SFTTrainer + PEFT, bf16), then prints tokens/s, an MFU estimate and peak GPU memory.

MFU counts 6 N FLOPs per token for full finetuning and 4 N for LoRA (forward 2N, backward through
the frozen weights 2N; the adapters' own gradients are negligible), attention excluded, against
the GPU's dense bf16 peak. It is an estimate for comparing runs, not a profile.

    python bench/finetune_gpu.py                    # on a GPU: the docs/benchmarks.md table
    python bench/finetune_gpu.py --tiny --steps 4     # a CPU smoke run of the script itself
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 peak, TFLOP/s, by device-name fragment (vendor datasheets, SXM parts).
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def build_model(path: Path, args) -> int:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from society_trainer.models.tiny_model import build_tokenizer

    config = LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(path)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def build_dataset(path: Path, examples: int, chars: int) -> None:
    """Conversations of about `chars` bytes (the byte-level tokenizer: one token per byte)."""
    rng = random.Random(0)
    digits = "0123456789+-*= "
    with path.open("w") as stream:
        for _ in range(examples):
            text = "".join(rng.choice(digits) for _ in range(chars))
            half = len(text) // 2
            row = {
                "messages": [
                    {"role": "user", "content": text[:half]},
                    {"role": "assistant", "content": text[half:]},
                ]
            }
            stream.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden-size", type=int, default=2048)
    parser.add_argument("--intermediate-size", type=int, default=8192)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--seq-len", type=int, default=1024, help="tokens per example")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model for a CPU smoke run")
    args = parser.parse_args()
    if args.tiny:
        args.hidden_size, args.intermediate_size, args.layers = 64, 128, 2
        args.heads, args.kv_heads, args.seq_len, args.batch_size = 4, 2, 128, 2
    args.vocab_size = max(args.vocab_size, 300)  # the byte-level tokenizer needs 260 ids

    sys.path.insert(0, str(ROOT / "trainer"))
    from society_trainer.config import (
        BaseModelConfig,
        FinetuneConfig,
        LoraConfig,
        TrainingConfig,
    )
    from society_trainer.finetune import run_finetune

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        params = build_model(tmp / "model", args)
        build_dataset(tmp / "data.jsonl", args.steps * args.batch_size, args.seq_len)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        lora = LoraConfig(r=args.lora_r, alpha=2 * args.lora_r) if args.method == "lora" else None
        summary = run_finetune(
            FinetuneConfig(
                iteration=1,
                agent=0,
                role="generation",
                model=BaseModelConfig(base_model=str(tmp / "model"), dtype="bfloat16"),
                dataset=tmp / "data.jsonl",
                output_dir=tmp / "out",
                method=args.method,
                lora=lora,
                training=TrainingConfig(
                    epochs=1,
                    learning_rate=1e-4,
                    batch_size=args.batch_size,
                    max_length=args.seq_len + 64,
                    save_steps=10**6,
                    gradient_checkpointing=args.gradient_checkpointing,
                ),
            )
        )

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    tokens_per_s = summary.tokensPerSecond
    flops_per_token = (6 if args.method == "full" else 4) * params
    peak = peak_tflops(device)
    mfu = f"{100 * tokens_per_s * flops_per_token / (peak * 1e12):.1f}%" if peak else "n/a"
    print(
        f"{args.method} finetune of a random Llama, {params / 1e9:.2f}B parameters, bf16, "
        f"on {device}; batch {args.batch_size} x {args.seq_len} tokens, "
        f"{summary.steps} steps, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'}\n"
    )
    print("| parameters | tokens | train s | tokens/s | MFU (est.) | peak memory (GiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {params / 1e9:.2f}B | {summary.tokens} | {summary.trainSeconds:.1f} | "
        f"{tokens_per_s:,.0f} | {mfu} | {summary.peakMemoryBytes / 2**30:.1f} |"
    )


if __name__ == "__main__":
    main()
