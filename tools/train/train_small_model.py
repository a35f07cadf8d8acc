#!/usr/bin/env python3
"""Trains Celer's default model, celer-tiny-py: a ~6M-parameter Llama on the Python standard library.

Usage: python3 tools/train/train_small_model.py --out-model DIR --out-fixtures DIR --minutes M

--minutes is the wall-clock budget of the whole script (tokenizer, training, evaluation, saving):
the optimisation loop measures its step time and sets its step count so that everything ends
within the budget. Needs CUDA, torch, transformers 5.x and tokenizers.

Outputs:
  --out-model:    config.json, model.safetensors (bf16), generation_config.json, tokenizer.json,
                  tokenizer_config.json, README.md (model card)
  --out-fixtures: reference.json (greedy decoding + logprobs of text prompts, same schema as
                  tools/reference/make_model_fixtures.py, plus prompt_text) and heldout.json
                  (a held-out token slice with transformers' mean NLL and perplexity over it).
All references are computed in fp32 (eager attention, TF32 off) from the bf16 weights reloaded
from disk, exactly as Celer will see them.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import stdlib_corpus  # noqa: E402
from make_model_fixtures import record_case, set_reference_numerics, write_json  # noqa: E402

SEED = 1234
VOCAB_SIZE = 8192
MAX_POSITIONS = 1024
# Sequences use the full context so the model is sane wherever Celer serves it (max_model_len 1024);
# 32 x 1024 tokens per step is the same token count as 64 x 512.
SEQ_LEN = 1024
BATCH = 32
PEAK_LR = 2e-3
MIN_LR_RATIO = 0.1
WARMUP_STEPS = 100
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
LOG_EVERY = 50
EVAL_EVERY = 250
EVAL_WINDOWS = 16
TIMING_STEPS = (10, 40)  # step time is measured between these steps, after CUDA warm-up
RESERVE_S = 45  # left after the loop for saving, reloading, evaluation and fixtures
MAX_SAFETENSORS_BYTES = 14 * 1000 * 1000
HELDOUT_TOKENS = 1000  # one forward pass, within max_position_embeddings
DECODE_STEPS = 24

# ChatML rendered by hand; stdlib_corpus.check_with_transformers checks the template renders the same.
CHAT_PROMPT = ("<|im_start|>user\nWrite a function that reverses a string.<|im_end|>\n"
               "<|im_start|>assistant\n")
FIXTURE_PROMPTS = [
    "def fibonacci(n):",
    "import os\n",
    "class Stack:\n    def __init__(self):",
    "for i in range(",
    'def read_config(path):\n    """',
    CHAT_PROMPT,
]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def build_model(device):
    config = transformers.LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=256, intermediate_size=688, num_hidden_layers=6,
        num_attention_heads=8, num_key_value_heads=2, head_dim=32, hidden_act="silu",
        max_position_embeddings=MAX_POSITIONS, rms_norm_eps=1e-5, initializer_range=0.02,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=0, pad_token_id=None,
        attention_bias=False, mlp_bias=False,
    )
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.to(device=device, dtype=torch.float32)


def encode_stream(tokenizer, texts, device):
    """Documents joined by <|endoftext|> (id 0) after each one, as one long id stream."""
    ids = []
    for encoding in tokenizer.encode_batch(texts):
        ids.extend(encoding.ids)
        ids.append(0)
    return torch.tensor(ids, dtype=torch.long, device=device)


def windows(stream, starts):
    offsets = torch.arange(SEQ_LEN + 1, device=stream.device)
    chunk = stream[starts.unsqueeze(1) + offsets]
    return chunk[:, :-1], chunk[:, 1:]


def loss_of(model, inputs, targets):
    logits = model(input_ids=inputs, use_cache=False).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def quick_val_loss(model, val_stream):
    count = min(EVAL_WINDOWS, (len(val_stream) - 1) // SEQ_LEN)
    starts = torch.arange(count, device=val_stream.device) * SEQ_LEN
    model.eval()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = float(loss_of(model, *windows(val_stream, starts)))
    model.train()
    return loss


def lr_at(step, total_steps, peak_lr=PEAK_LR):
    """Linear warm-up, then cosine decay to MIN_LR_RATIO of the peak once the step count is known."""
    if step < WARMUP_STEPS:
        return peak_lr * (step + 1) / WARMUP_STEPS
    if total_steps is None:
        return peak_lr
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS))
    return peak_lr * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, train_stream, val_stream, deadline):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8, fused=True)
    gen = torch.Generator(device=train_stream.device).manual_seed(SEED)
    model.train()
    step, total_steps, timing_start = 0, None, None
    best_loss, best_state, best_step = float("inf"), None, 0
    loop_start = time.time()
    while total_steps is None or step < total_steps:
        if time.time() > deadline:
            log(f"deadline reached at step {step}")
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps)
        starts = torch.randint(0, len(train_stream) - SEQ_LEN - 1, (BATCH,), generator=gen,
                               device=train_stream.device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_of(model, *windows(train_stream, starts))
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
            # Evaluation passes cost a little too; 3% slack keeps the loop inside the deadline.
            total_steps = step + int((deadline - time.time()) / step_time * 0.97)
            log(f"step time {step_time * 1000:.1f} ms -> {total_steps} steps in total")
        if step % LOG_EVERY == 0:
            log(f"step {step}: loss {float(loss):.4f} lr {lr_at(step, total_steps):.2e}")
        if step % EVAL_EVERY == 0 or step == total_steps:
            val = quick_val_loss(model, val_stream)
            log(f"step {step}: val loss {val:.4f}")
            if val < best_loss:
                best_loss, best_step = val, step
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    val = quick_val_loss(model, val_stream)
    if val < best_loss:
        best_loss, best_step, best_state = val, step, None
    if best_state is not None:
        model.load_state_dict(best_state)
    log(f"trained {step} steps in {time.time() - loop_start:.0f}s; keeping step {best_step} "
        f"(val loss {best_loss:.4f})")
    return {"steps": step, "kept_step": best_step, "seconds": time.time() - loop_start}


@torch.no_grad()
def full_val_nll(model, val_stream, device):
    """Mean NLL over non-overlapping SEQ_LEN windows of the held-out stream, fp32."""
    count = (len(val_stream) - 1) // SEQ_LEN
    total, tokens = 0.0, 0
    for first in range(0, count, 8):
        starts = torch.arange(first, min(count, first + 8), device=device) * SEQ_LEN
        inputs, targets = windows(val_stream, starts)
        total += float(loss_of(model, inputs, targets)) * targets.numel()
        tokens += targets.numel()
    return total / tokens, tokens


@torch.no_grad()
def heldout_slice(model, tokenizer, heldout_texts, device):
    """~HELDOUT_TOKENS tokens of the first long-enough held-out file, cut at a token boundary."""
    for text in heldout_texts:
        encoding = tokenizer.encode(text)
        if len(encoding.ids) > HELDOUT_TOKENS:
            text = text[:encoding.offsets[HELDOUT_TOKENS - 1][1]]
            ids = tokenizer.encode(text).ids
            break
    else:
        raise RuntimeError(f"no held-out file has more than {HELDOUT_TOKENS} tokens")
    logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    targets = torch.tensor(ids[1:], device=device)
    nll = float(-logprobs.gather(1, targets.unsqueeze(1)).mean())
    return {"text": text, "token_ids": ids, "predicted_tokens": len(ids) - 1,
            "mean_nll": nll, "perplexity": math.exp(nll),
            "note": "one fp32 forward over token_ids (eager attention, bf16 weights from disk); "
                    "mean over the predictions of tokens 1..n-1"}


def write_model_card(path, facts):
    lines = [
        "---",
        "license: psf-2.0",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "---",
        "",
        "# celer-tiny-py",
        "",
        "Celer's default model: a tiny Llama trained from scratch on the Python standard library, so",
        "that the engine has a small real model (real tokenizer, real weights, meaningful text) to",
        "serve and test against. It writes Python-looking text; it is not a useful assistant.",
        "",
        "## Training data",
        "",
        f"The `.py` sources of the Python {facts['python_version']} standard library (`{facts['stdlib_dir']}`),",
        "without the `test`, `idlelib` and `lib2to3` folders, in sorted path order; every 50th file",
        f"is held out for validation. {facts['train_files']} training files ({facts['train_tokens']:,} tokens),",
        f"{facts['heldout_files']} held-out files ({facts['heldout_tokens']:,} tokens). Documents are",
        "joined with `<|endoftext|>`.",
        "",
        "## Tokenizer",
        "",
        f"Byte-level BPE (HF `tokenizers`, `ByteLevel` pre-tokenizer without prefix space, `ByteLevel`",
        f"decoder), {facts['vocab_size']} tokens, trained on the training files. Special tokens:",
        "`<|endoftext|>` (id 0, document separator and EOS), `<|im_start|>` (1), `<|im_end|>` (2).",
        "No BOS token is added. `tokenizer_config.json` carries a ChatML chat template.",
        "",
        "## Architecture",
        "",
        f"`LlamaForCausalLM`, {facts['parameters']:,} parameters: hidden 256, 6 layers, 8 attention heads,",
        "2 KV heads (GQA, head_dim 32), SwiGLU intermediate 688, RMSNorm eps 1e-5, RoPE theta 10000,",
        f"max_position_embeddings {MAX_POSITIONS}, tied input/output embeddings. Weights stored in bf16.",
        "",
        "## Training",
        "",
        f"Plain PyTorch, AdamW (betas 0.9/0.95, weight decay {WEIGHT_DECAY}), peak learning rate {PEAK_LR},",
        f"{WARMUP_STEPS} warm-up steps then cosine decay to {MIN_LR_RATIO:.0%}, bf16 autocast, gradient clip",
        f"{GRAD_CLIP}, batches of {BATCH} x {SEQ_LEN} random windows of the token stream, seed {SEED}.",
        f"{facts['steps']} steps ({facts['steps'] * BATCH * SEQ_LEN:,} tokens) in {facts['train_seconds']:.0f} s on",
        f"{facts['device']}; the weights kept are those of step {facts['kept_step']}, the best on the",
        "periodic validation check.",
        "",
        "## Evaluation",
        "",
        f"Held-out mean negative log-likelihood {facts['val_nll']:.4f} nats/token, perplexity",
        f"{math.exp(facts['val_nll']):.2f}, over {facts['val_tokens']:,} predicted tokens in",
        f"non-overlapping {SEQ_LEN}-token windows, computed in fp32 from the saved bf16 weights",
        f"(transformers {transformers.__version__}, torch {torch.__version__}).",
        "",
        "## License",
        "",
        "Trained from scratch on the Python standard library, which is distributed under the",
        "Python Software Foundation License (PSF-2.0); the weights and tokenizer are released under",
        "the same terms.",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-fixtures", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    args = parser.parse_args()
    script_start = time.time()
    deadline = script_start + args.minutes * 60 - RESERVE_S
    if not torch.cuda.is_available():
        raise RuntimeError("training needs CUDA")
    device = torch.device("cuda")
    set_reference_numerics()
    os.makedirs(args.out_model, exist_ok=True)
    os.makedirs(args.out_fixtures, exist_ok=True)

    stdlib_dir = stdlib_corpus.find_stdlib_dir()
    train_texts, heldout_texts, heldout_paths = stdlib_corpus.load_corpus(stdlib_dir)
    log(f"corpus {stdlib_dir}: {len(train_texts)} training files "
        f"({sum(map(len, train_texts)):,} chars), {len(heldout_texts)} held out")
    tokenizer = stdlib_corpus.train_tokenizer(train_texts, VOCAB_SIZE)
    stdlib_corpus.save_tokenizer(tokenizer, args.out_model, MAX_POSITIONS)
    log(f"tokenizer trained: {tokenizer.get_vocab_size()} tokens")
    tokenizer_problems = stdlib_corpus.check_with_transformers(tokenizer, args.out_model)
    for problem in tokenizer_problems:
        log(f"WARNING tokenizer check: {problem}")

    train_stream = encode_stream(tokenizer, train_texts, device)
    val_stream = encode_stream(tokenizer, heldout_texts, device)
    log(f"encoded: {len(train_stream):,} training tokens, {len(val_stream):,} held-out tokens")
    if len(val_stream) < EVAL_WINDOWS * SEQ_LEN + 1:
        raise RuntimeError("held-out stream too short for validation")

    model = build_model(device)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"model: {parameters:,} parameters; training until {time.strftime('%H:%M:%S', time.localtime(deadline))}")
    result = train(model, train_stream, val_stream, deadline)

    model.to(torch.bfloat16).save_pretrained(args.out_model)
    write_json(os.path.join(args.out_model, "generation_config.json"), {
        "eos_token_id": 0, "do_sample": False, "transformers_version": transformers.__version__})
    weights_bytes = os.path.getsize(os.path.join(args.out_model, "model.safetensors"))
    log(f"saved bf16 weights: {weights_bytes:,} bytes")
    if weights_bytes > MAX_SAFETENSORS_BYTES:
        raise RuntimeError(f"model.safetensors is {weights_bytes} bytes, over {MAX_SAFETENSORS_BYTES}")
    del model
    torch.cuda.empty_cache()

    ref = transformers.AutoModelForCausalLM.from_pretrained(
        args.out_model, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    val_nll, val_tokens = full_val_nll(ref, val_stream, device)
    log(f"held-out (fp32 from bf16 weights): nll {val_nll:.4f}, perplexity {math.exp(val_nll):.2f}")

    cases = []
    for text in FIXTURE_PROMPTS:
        ids = tokenizer.encode(text).ids
        case, margin = record_case(ref, ids, DECODE_STEPS, device)
        case = {"prompt_text": text, **case, "min_greedy_margin": margin}
        cases.append(case)
        log(f"fixture {text!r}: margin {margin:.4f} -> {tokenizer.decode(case['output_token_ids'])!r}")
    write_json(os.path.join(args.out_fixtures, "reference.json"), {
        "model": "celer-tiny-py", "transformers_version": transformers.__version__,
        "torch_version": torch.__version__, "dtype": "float32", "storage_dtype": "bfloat16",
        "cases": cases})
    heldout = heldout_slice(ref, tokenizer, heldout_texts, device)
    write_json(os.path.join(args.out_fixtures, "heldout.json"), heldout)
    log(f"heldout slice: {len(heldout['token_ids'])} tokens, nll {heldout['mean_nll']:.4f}, "
        f"perplexity {heldout['perplexity']:.2f}")

    heldout_tokens = len(val_stream)
    write_model_card(os.path.join(args.out_model, "README.md"), {
        "python_version": os.path.basename(stdlib_dir).replace("python", ""), "stdlib_dir": stdlib_dir,
        "train_files": len(train_texts), "train_tokens": len(train_stream),
        "heldout_files": len(heldout_paths), "heldout_tokens": heldout_tokens,
        "vocab_size": tokenizer.get_vocab_size(), "parameters": parameters,
        "steps": result["steps"], "kept_step": result["kept_step"], "train_seconds": result["seconds"],
        "device": torch.cuda.get_device_name(0), "val_nll": val_nll, "val_tokens": val_tokens,
    })
    log(f"done in {time.time() - script_start:.0f}s")
    if tokenizer_problems:
        log(f"WARNING: {len(tokenizer_problems)} tokenizer check problem(s), see above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
