"""LoRA recovery ("w/ tune"): LLM-Pruner's post-training on any pruned (physically smaller) model.

peft LoRA on the seven projections, trained on Alpaca-style instruction data as the reference's
`post_training.py` with the HF Trainer defaults it relies on: prompt and response tokenized
together, the loss on the response only (the reference's default `train_on_inputs=False`), AdamW
without weight decay, gradients clipped to norm 1.0, linear warm-up and decay; the trained adapters
with the best validation loss kept (the reference's `load_best_model_at_end`), then merged into the
weights so that the result is an ordinary pruned checkpoint. Warm-up and the validation interval
may be given as fractions of the optimizer steps, so that a smaller data set keeps the reference's
proportions (100 warm-up steps and a validation every 100 of its 1554 steps).
"""
from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["PROMPT", "format_example", "tokenize_examples", "lora_targets", "recover", "train_lora", "split_examples",
           "validation_loss", "schedule_steps"]

# The Alpaca prompt template used by alpaca-lora and LLM-Pruner's post-training.
PROMPT = {
    "input": ("Below is an instruction that describes a task, paired with an input that provides further "
              "context. Write a response that appropriately completes the request.\n\n"
              "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"),
    "no_input": ("Below is an instruction that describes a task. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"),
}


def format_example(example: dict[str, str]) -> tuple[str, str]:
    """(prompt, response) of one instruction example."""
    template = PROMPT["input"] if example.get("input") else PROMPT["no_input"]
    return template.format(**example), example["output"]


def tokenize_examples(tokenizer, examples: list[dict[str, str]], cutoff: int) -> list[dict[str, list[int]]]:
    """As the reference's `generate_and_tokenize_prompt`: prompt and response tokenized together and
    truncated to `cutoff` tokens, EOS appended where the text ends before the cutoff, labels -100 on
    the first n tokens, n the length of the prompt tokenized alone. Examples left without a response
    token (a prompt of `cutoff` tokens or more) are dropped: their loss would be 0/0."""
    out = []
    for example in examples:
        prompt, response = format_example(example)
        ids = tokenizer(prompt + response, truncation=True, max_length=cutoff)["input_ids"]
        if ids[-1] != tokenizer.eos_token_id and len(ids) < cutoff:
            ids = ids + [tokenizer.eos_token_id]
        n_prompt = len(tokenizer(prompt, truncation=True, max_length=cutoff)["input_ids"])
        labels = ([-100] * n_prompt + ids[n_prompt:])[:len(ids)]
        if any(label != -100 for label in labels):
            out.append({"input_ids": ids, "labels": labels})
    return out


def _batch(items: list[dict[str, list[int]]], pad_id: int, device) -> dict[str, torch.Tensor]:
    length = max(len(x["input_ids"]) for x in items)
    pad = lambda seq, value: seq + [value] * (length - len(seq))  # noqa: E731
    return {
        "input_ids": torch.tensor([pad(x["input_ids"], pad_id) for x in items], device=device),
        "attention_mask": torch.tensor([pad([1] * len(x["input_ids"]), 0) for x in items], device=device),
        "labels": torch.tensor([pad(x["labels"], -100) for x in items], device=device),
    }


def lora_targets(model, projections: list[str]) -> list[str]:
    """Full names of the projections to adapt, leaving out those pruning emptied (no in/out features)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.split(".")[-1] in projections
            and module.in_features > 0 and module.out_features > 0]


def split_examples(tokenizer, examples: list[dict[str, str]], settings: dict[str, Any], rng: random.Random):
    """(train, validation) tokenized examples: a seeded shuffle, the first `val_size` held out.
    An empty split is refused, naming the sizes that emptied it."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    val_size, cutoff = settings["val_size"], settings["cutoff"]
    shuffled = [examples[i] for i in order]
    val = tokenize_examples(tokenizer, shuffled[:val_size], cutoff)
    train = tokenize_examples(tokenizer, shuffled[val_size:], cutoff)
    for name, split, size in (("training", train, len(examples) - val_size), ("validation", val, val_size)):
        if not split:
            raise ValueError(f"recovery: the {name} split is empty: {len(examples)} examples, val_size {val_size} "
                             f"leave {max(size, 0)} for it, and none of them has a response token within "
                             f"cutoff {cutoff}; lower val_size or raise cutoff")
    return train, val


def schedule_steps(value: float, steps: int) -> int:
    """Optimizer steps from a setting given in steps (>= 1) or as a fraction (< 1) of `steps`."""
    return round(value * steps) if value < 1 else int(value)


@torch.no_grad()
def validation_loss(model, data, micro_batch: int, pad_id: int) -> float:
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(data), micro_batch):
        batch = _batch(data[i:i + micro_batch], pad_id, device)
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += model(**batch).loss.item() * n
        count += n
    return total / count


def recover(model, tokenizer, examples: list[dict[str, str]], settings: dict[str, Any], seed: int = 0):
    """Train LoRA adapters, keep the best by validation loss, merge them; returns (model, log)."""
    peft_model, log = train_lora(model, tokenizer, examples, settings, seed)
    merged = peft_model.merge_and_unload()
    merged.config.use_cache = True
    return merged.eval(), log


def train_lora(model, tokenizer, examples: list[dict[str, str]], settings: dict[str, Any], seed: int = 0):
    """The peft model with the best trained adapters (by validation loss) loaded, and the training
    log with the effective schedule."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    rng = random.Random(seed)
    torch.manual_seed(seed)
    train, val = split_examples(tokenizer, examples, settings, rng)
    accumulation = max(1, settings["batch"] // settings["micro_batch"])
    batch = accumulation * settings["micro_batch"]  # the effective batch
    steps = settings.get("steps") or math.ceil(settings["epochs"] * len(train) / settings["batch"])
    warmup = schedule_steps(settings["warmup"], steps)
    eval_every = max(1, schedule_steps(settings["eval_every"], steps))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    model.config.use_cache = False
    peft_model = get_peft_model(model, LoraConfig(
        r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"], bias="none",
        target_modules=lora_targets(model, settings["target_modules"]), task_type="CAUSAL_LM"))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings["lr"], weight_decay=settings["weight_decay"])
    schedule = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    device = next(model.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.get("dtype") == "bfloat16")

    peft_model.eval()
    log = {"train_examples": len(train), "val_examples": len(val),
           "dropped_examples": len(examples) - len(train) - len(val),
           "schedule": {"steps": steps, "epochs": round(steps * batch / len(train), 3), "batch": batch,
                        "warmup_steps": warmup,
                        "eval_every_steps": eval_every, "lr": settings["lr"], "weight_decay": settings["weight_decay"],
                        "max_grad_norm": settings["max_grad_norm"]},
           "val_loss": [(0, validation_loss(peft_model, val, settings["micro_batch"], pad_id))],
           "train_loss": [], "trainable_params": sum(p.numel() for p in trainable)}
    best, best_state = math.inf, None
    cursor = 0
    for step in tqdm(range(1, steps + 1), desc="LoRA", mininterval=10):
        peft_model.train()
        loss_sum = 0.0
        for _ in range(accumulation):
            if cursor + settings["micro_batch"] > len(train):
                rng.shuffle(train)
                cursor = 0
            with autocast:
                loss = peft_model(**_batch(train[cursor:cursor + settings["micro_batch"]], pad_id, device)).loss
            (loss / accumulation).backward()
            loss_sum += loss.item() / accumulation
            cursor += settings["micro_batch"]
        torch.nn.utils.clip_grad_norm_(trainable, settings["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        log["train_loss"].append((step, loss_sum))
        if step % eval_every == 0 or step == steps:
            peft_model.eval()
            current = validation_loss(peft_model, val, settings["micro_batch"], pad_id)
            log["val_loss"].append((step, current))
            if current < best:  # the untrained adapters (step 0) are no candidate
                best, log["best_step"] = current, step
                best_state = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if name in best_state:
                param.copy_(best_state[name])
    log["best_val_loss"] = best
    return peft_model.eval(), log
