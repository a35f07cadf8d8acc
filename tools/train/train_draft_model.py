#!/usr/bin/env python3
"""Trains celer-tiny-py-draft: a draft model for celer-tiny-py (speculative decoding, method draft_model).

Usage: python3 tools/train/train_draft_model.py --target models/celer-tiny-py --out-model DIR --minutes M

The draft keeps the target's tokenizer (same ids, same special tokens) and is distilled from it: on random windows
of the same Python standard library corpus, the loss is the KL divergence from the target's next-token
distribution to the draft's, which is what raises the share of drafts the target accepts (greedy acceptance
needs the two argmaxes to agree). --minutes is the wall-clock budget of the whole script; the loop measures its
step time and sets its step count to fit. Needs CUDA, torch, transformers 5.x and tokenizers.

Outputs in --out-model: config.json, model.safetensors (bf16), generation_config.json (the target's), README.md
(model card with the measured greedy agreement).
"""

import argparse
import os
import shutil
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stdlib_corpus  # noqa: E402
from train_small_model import BATCH, SEQ_LEN, encode_stream, log, lr_at, windows  # noqa: E402

SEED = 4321
PEAK_LR = 3e-3   # warm-up and cosine decay as train_small_model's lr_at
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
LOG_EVERY = 100
TIMING_STEPS = (10, 40)
RESERVE_S = 30  # saving and the agreement check after the loop
EVAL_WINDOWS = 16
# Two layers of width 128: about a fifth of the target's multiply-adds per token (the 8192 x 128 tied embedding is
# most of it), so that a draft step costs far less than a target step on the CPU.
DRAFT_SHAPE = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32)


def build_draft(target_config, device):
    config = transformers.LlamaConfig(
        vocab_size=target_config.vocab_size, hidden_act="silu",
        max_position_embeddings=target_config.max_position_embeddings, rms_norm_eps=target_config.rms_norm_eps,
        initializer_range=0.02, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=0, pad_token_id=None,
        attention_bias=False, mlp_bias=False, **DRAFT_SHAPE)
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(device=device, dtype=torch.float32)


def distill_loss(draft, target, inputs):
    with torch.no_grad():
        teacher = target(input_ids=inputs, use_cache=False).logits.float()
    student = draft(input_ids=inputs, use_cache=False).logits.float()
    vocab = student.shape[-1]
    return F.kl_div(F.log_softmax(student.reshape(-1, vocab), -1), F.log_softmax(teacher.reshape(-1, vocab), -1),
                    log_target=True, reduction="batchmean")


def heldout_windows(stream):
    """The first EVAL_WINDOWS whole SEQ_LEN windows of a held-out stream: what the drafters' evaluations read."""
    count = min(EVAL_WINDOWS, (len(stream) - 1) // SEQ_LEN)
    inputs, _ = windows(stream, torch.arange(count, device=stream.device) * SEQ_LEN)
    return inputs


@torch.no_grad()
def agreement(draft, target, stream):
    """Share of held-out positions where the draft's argmax is the target's (fp32): greedy single-token acceptance."""
    inputs = heldout_windows(stream)
    same = (draft(input_ids=inputs, use_cache=False).logits.argmax(-1)
            == target(input_ids=inputs, use_cache=False).logits.argmax(-1))
    return float(same.float().mean())


def budgeted_training(model, train_stream, deadline, loss_of_batch, seed, peak_lr=PEAK_LR):
    """Trains a drafter until the deadline on random SEQ_LEN windows of train_stream: AdamW (weight decay on matrices
    only), warm-up and cosine decay as lr_at, bf16 autocast, gradients clipped. After TIMING_STEPS the loop times its
    steps and sets its step count to fit the time left (2 % slack). loss_of_batch(inputs) gives the batch's loss and a
    function describing it for the log, called only on the steps that log (reading a loss waits for the GPU).
    Returns (steps, seconds)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak_lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    gen = torch.Generator(device=train_stream.device).manual_seed(seed)
    model.train()
    step, total_steps, timing_start = 0, None, None
    loop_start = time.time()
    while total_steps is None or step < total_steps:
        if time.time() > deadline:
            log(f"deadline reached at step {step}")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, peak_lr)
        starts = torch.randint(0, len(train_stream) - SEQ_LEN - 1, (BATCH,), generator=gen, device=train_stream.device)
        inputs, _ = windows(train_stream, starts)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, describe = loss_of_batch(inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        step += 1
        if step == TIMING_STEPS[0]:
            torch.cuda.synchronize()
            timing_start = time.time()
        elif step == TIMING_STEPS[1]:
            torch.cuda.synchronize()
            step_time = (time.time() - timing_start) / (TIMING_STEPS[1] - TIMING_STEPS[0])
            total_steps = step + int((deadline - time.time()) / step_time * 0.98)
            log(f"step time {step_time * 1000:.1f} ms -> {total_steps} steps in total")
        if step % LOG_EVERY == 0:
            log(f"step {step}: {describe()}, lr {lr_at(step, total_steps, peak_lr):.2e}")
    return step, time.time() - loop_start


def write_model_card(path, facts):
    lines = [
        "---",
        "license: psf-2.0",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "---",
        "",
        "# celer-tiny-py-draft",
        "",
        "The draft model of Celer's default model, celer-tiny-py, for speculative decoding:",
        "",
        "```bash",
        "celer serve models/celer-tiny-py --speculative-config \\",
        "  '{\"method\": \"draft_model\", \"model\": \"models/celer-tiny-py-draft\", \"num_speculative_tokens\": 3}'",
        "```",
        "",
        "## Architecture",
        "",
        f"`LlamaForCausalLM`, {facts['parameters']:,} parameters: hidden {DRAFT_SHAPE['hidden_size']}, "
        f"{DRAFT_SHAPE['num_hidden_layers']} layers, {DRAFT_SHAPE['num_attention_heads']} attention heads,",
        f"{DRAFT_SHAPE['num_key_value_heads']} KV heads (head_dim {DRAFT_SHAPE['head_dim']}), SwiGLU intermediate "
        f"{DRAFT_SHAPE['intermediate_size']}, tied embeddings, the target's tokenizer",
        "and context length. Weights stored in bf16. It has no tokenizer files of its own: a draft speaks its target's",
        "ids, and the engine tokenizes with celer-tiny-py's.",
        "",
        "## Training",
        "",
        "Distilled from celer-tiny-py: the loss is KL(target || draft) over every position of random",
        f"{SEQ_LEN}-token windows of the same corpus (the Python {facts['python_version']} standard library,",
        f"as for the target), batches of {BATCH}, AdamW (peak learning rate {PEAK_LR}, cosine decay),",
        f"bf16 autocast, seed {SEED}; {facts['steps']} steps in {facts['seconds']:.0f} s on {facts['device']}.",
        "",
        "## Evaluation",
        "",
        f"On held-out windows the draft's greedy token is the target's at {facts['agreement']:.1%} of positions",
        "(fp32, from the saved bf16 weights): the chance that a single greedy draft is accepted.",
        "",
        "## License",
        "",
        "Trained on the Python standard library (PSF-2.0), from a model under the same terms.",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def load_teacher(target_dir, out_model, device):
    """What a drafter is distilled from: the target's tokenizer, the corpus it was trained on (training and held-out
    streams, encoded on the device) and the target itself in fp32, frozen. The drafter's directory gets the target's
    generation_config.json and no tokenizer files: a drafter speaks its target's ids, and the engine tokenizes with
    the target's tokenizer. Returns (tokenizer, stdlib_dir, train_stream, val_stream, target)."""
    tokenizer = Tokenizer.from_file(os.path.join(target_dir, "tokenizer.json"))
    shutil.copy(os.path.join(target_dir, "generation_config.json"), os.path.join(out_model, "generation_config.json"))
    stdlib_dir = stdlib_corpus.find_stdlib_dir()
    train_texts, heldout_texts, _ = stdlib_corpus.load_corpus(stdlib_dir)
    train_stream = encode_stream(tokenizer, train_texts, device)
    val_stream = encode_stream(tokenizer, heldout_texts, device)
    log(f"corpus {stdlib_dir}: {len(train_stream):,} training tokens, {len(val_stream):,} held out")
    target = transformers.AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).to(device).eval()
    for p in target.parameters():
        p.requires_grad_(False)
    return tokenizer, stdlib_dir, train_stream, val_stream, target


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    args = parser.parse_args()
    deadline = time.time() + args.minutes * 60 - RESERVE_S
    if not torch.cuda.is_available():
        raise RuntimeError("training needs CUDA")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(args.out_model, exist_ok=True)

    _, stdlib_dir, train_stream, val_stream, target = load_teacher(args.target, args.out_model, device)
    draft = build_draft(target.config, device)
    parameters = sum(p.numel() for p in draft.parameters())
    log(f"draft: {parameters:,} parameters")
    def kl(inputs):
        loss = distill_loss(draft, target, inputs)
        return loss, lambda: f"KL {float(loss):.4f}"

    steps, seconds = budgeted_training(draft, train_stream, deadline, kl, SEED)

    draft.to(torch.bfloat16).save_pretrained(args.out_model)
    del draft
    torch.backends.cuda.matmul.allow_tf32 = False
    saved = transformers.AutoModelForCausalLM.from_pretrained(args.out_model, dtype=torch.float32).to(device).eval()
    share = agreement(saved, target, val_stream)
    log(f"trained {steps} steps in {seconds:.0f} s; held-out greedy agreement {share:.4f}")
    write_model_card(os.path.join(args.out_model, "README.md"), {
        "parameters": parameters, "python_version": os.path.basename(stdlib_dir).replace("python", ""),
        "steps": steps, "seconds": seconds, "device": torch.cuda.get_device_name(0), "agreement": share,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
