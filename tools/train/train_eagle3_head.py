#!/usr/bin/env python3
"""Trains celer-tiny-py-eagle3: an EAGLE-3 draft head for celer-tiny-py (speculative decoding, method eagle3).

Usage: python3 tools/train/train_eagle3_head.py --target models/celer-tiny-py --out-model DIR --minutes M
           [--out-fixture FILE]

The head is one Llama decoder layer that drafts from the target's own features: the residual stream entering the
target's layers 1, 3 and 5 (fc folds the three into one hidden state), the target's embedding table for its token
input, and a 2048-token draft vocabulary (the most frequent next tokens of the corpus; d2t / t2d map it to target
ids). Drafts are chained: each step's pre-norm hidden state is the next step's hidden input. Training is
EAGLE-3's training-time test: TTT_STEPS chained steps unrolled at every position of random windows at once, with
an attention mask that lets each step see exactly the entries the engine's KV cache holds at inference, and a loss
that distils the target's next-token distribution (restricted to the draft vocabulary) into every step.
--minutes is the wall-clock budget of the whole script; the loop measures its step time and sets its step count to
fit. Needs CUDA, torch, transformers 5.x, tokenizers and safetensors.

Outputs in --out-model: config.json and model.safetensors in the public EAGLE-3 layout that vLLM's
Eagle3LlamaForCausalLM loads (bf16, no embed_tokens: the head shares the target's), generation_config.json (the
target's) and README.md (model card with the measured agreement and acceptance length). --out-fixture: the head's
drafts and top-5 ids at every prefix of the fixture prompts' greedy continuations, the reference for the engine.
"""

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from make_model_fixtures import set_reference_numerics, write_json  # noqa: E402
from train_draft_model import budgeted_training, heldout_windows, load_teacher  # noqa: E402
from train_small_model import BATCH, FIXTURE_PROMPTS, SEQ_LEN, log  # noqa: E402

SEED = 4322
PEAK_LR = 3e-3   # warm-up and cosine decay as train_small_model's lr_at
INIT_STD = 0.02  # transformers' initializer_range for Llama
RESERVE_S = 45  # saving, the evaluation and the fixture after the loop
AUX_LAYERS = (1, 3, 5)  # hidden_states[i]: the residual stream entering target layer i
DRAFT_VOCAB = 2048
# Chained steps trained per position; also the number of drafts (k) the evaluation and the fixture make.
TTT_STEPS = 3
STEP_DECAY = 0.8  # step j's loss weighs STEP_DECAY ** j: later drafts matter only if the earlier ones were accepted
ACCEPT_PROMPTS = 8
ACCEPT_PROMPT_TOKENS = 64
ACCEPT_NEW_TOKENS = 128
FIXTURE_NEW_TOKENS = 48
TOP_K = 5


class RMSNorm(nn.Module):
    """As transformers' LlamaRMSNorm: the variance in fp32, the weight applied in the input's dtype."""

    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rotate(x, cos, sin):
    """RoPE in transformers' rotate-half layout: the two halves of the head dimension form the pairs."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


class Attention(nn.Module):
    """GQA attention whose q/k/v read the concatenation of the normed token embedding and normed hidden input."""

    def __init__(self, config):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                    config.head_dim)
        self.q_proj = nn.Linear(2 * config.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(2 * config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(2 * config.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, cos, sin, past, mask):
        """x: [B, N, 2H] new entries; past: (keys, values) blocks of earlier entries, [B, KV, n_i, D] each; mask:
        bool [N, keys] over the past blocks then the new entries, or None where every key is visible. Returns the
        output and the new entries' (keys, values) for later steps."""
        batch, n, _ = x.shape
        q = rotate(self.q_proj(x).view(batch, n, self.heads, self.head_dim).transpose(1, 2), cos, sin)
        k = rotate(self.k_proj(x).view(batch, n, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(batch, n, self.kv_heads, self.head_dim).transpose(1, 2)
        keys = torch.cat([block for block, _ in past] + [k], dim=2)
        values = torch.cat([block for _, block in past] + [v], dim=2)
        # Query head h reads KV head h // groups, as transformers' repeat_kv.
        groups = self.heads // self.kv_heads
        out = F.scaled_dot_product_attention(q, keys.repeat_interleave(groups, dim=1),
                                             values.repeat_interleave(groups, dim=1), attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, n, -1)), (k, v)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MidLayer(nn.Module):
    """The head's decoder layer: a Llama layer whose attention input is [norm(embedding), norm(hidden)] and whose
    residual stream starts from the hidden input alone."""

    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.hidden_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, h, e, cos, sin, past, mask):
        x = torch.cat([self.input_layernorm(e), self.hidden_norm(h)], dim=-1)
        attended, kv = self.self_attn(x, cos, sin, past, mask)
        residual = h + attended
        return residual + self.mlp(self.post_attention_layernorm(residual)), kv


class Eagle3Head(nn.Module):
    """The EAGLE-3 head; its state_dict is the checkpoint (the names vLLM's Eagle3LlamaForCausalLM loads)."""

    def __init__(self, config):
        super().__init__()
        self.fc = nn.Linear(len(AUX_LAYERS) * config.hidden_size, config.hidden_size, bias=False)
        self.midlayer = MidLayer(config)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, DRAFT_VOCAB, bias=False)
        self.register_buffer("d2t", torch.zeros(DRAFT_VOCAB, dtype=torch.long))
        self.register_buffer("t2d", torch.zeros(config.vocab_size, dtype=torch.bool))
        # Default RoPE frequencies computed as transformers does; derived from the config, so not saved.
        theta = config.rope_parameters["rope_theta"]
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.int64).float() / config.head_dim
        self.register_buffer("inv_freq", 1.0 / theta ** exponents, persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=INIT_STD)

    @torch.no_grad()
    def set_draft_vocabulary(self, target_ids):
        """target_ids: the DRAFT_VOCAB target ids of the draft vocabulary, ascending (draft id i is target_ids[i])."""
        self.d2t.copy_(target_ids - torch.arange(DRAFT_VOCAB, device=target_ids.device))
        self.t2d.zero_()
        self.t2d[target_ids] = True

    def to_target(self, draft_ids):
        return draft_ids + self.d2t[draft_ids]

    def draft_vocabulary(self):
        return self.to_target(torch.arange(DRAFT_VOCAB, device=self.d2t.device))

    def step(self, h, e, positions, past, mask):
        """One head step for N new entries: h [B, N, H] hidden inputs, e [B, N, H] token embeddings, positions [N]
        (RoPE). Returns the pre-norm hidden states (the next chained step's input), the draft-vocabulary logits
        and the new entries' (keys, values)."""
        freqs = positions.float()[:, None] * self.inv_freq[None, :]
        angles = torch.cat([freqs, freqs], dim=-1)
        prenorm, kv = self.midlayer(h, e, angles.cos(), angles.sin(), past, mask)
        return prenorm, self.lm_head(self.norm(prenorm)), kv


def ttt_mask(n, step, device):
    """Which keys the step-`step` entries at positions 0..n-1 attend, over the keys [K0, K1, .., K_step] of steps
    0..step (n positions each). As the engine's cache holds them: step j at position q is the j-th chained draft
    after q - j + 2 known tokens, so it sees the step-0 entries at positions <= q - j, and its own chain, the step-i
    entry at position q - j + i for i = 1..j (itself last)."""
    q = torch.arange(n, device=device)[:, None]
    k = torch.arange(n, device=device)[None, :]
    return torch.cat([k <= q - step] + [k == q - step + i for i in range(1, step + 1)], dim=1)


def unroll(head, aux, embeds, steps):
    """The training-time test: `steps` chained steps at every position at once. aux [B, N, 3H] are the target's
    features at positions 0..N-1 and embeds [B, N, H] the embeddings of tokens 1..N, so that every step at position
    q predicts token q + 2. Returns each step's (prenorm, logits, (keys, values))."""
    n = aux.shape[1]
    positions = torch.arange(n, device=aux.device)
    h, past, outputs = head.fc(aux), [], []
    for step in range(steps):
        prenorm, logits, kv = head.step(h, embeds, positions, past, ttt_mask(n, step, aux.device))
        past.append(kv)
        outputs.append((prenorm, logits, kv))
        # Step j + 1 at q continues step j's chain from q - 1. Position 0 has no chain before it: its zeros make
        # entries that only entries without a loss (positions < step) attend.
        h = F.pad(prenorm[:, :-1], (0, 0, 1, 0))
    return outputs


def target_features(target, inputs):
    """The target over inputs [B, S]: its aux hidden states at positions 0..S-2 and its logits at 1..S-1, aligned
    so that index p holds what head step 0 at p reads (with token p + 1) and what it is taught (token p + 2)."""
    out = target(input_ids=inputs, output_hidden_states=True, use_cache=False)
    aux = torch.cat([out.hidden_states[i] for i in AUX_LAYERS], dim=-1)
    return aux[:, :-1], out.logits[:, 1:]


def ttt_loss(head, target, inputs):
    """Weighted sum over the chained steps of KL(target || head) on the draft vocabulary, and the per-step KLs."""
    with torch.no_grad():
        aux, logits = target_features(target, inputs)
        teacher = F.log_softmax(logits.float().index_select(-1, head.draft_vocabulary()), dim=-1)
        # Where the target's greedy token is outside the draft vocabulary no draft can be accepted: masked out, so
        # the head spends its capacity on positions it can win.
        in_vocab = head.t2d[logits.argmax(-1)]
        embeds = target.get_input_embeddings()(inputs[:, 1:])
    per_step = []
    for step, (_, draft_logits, _) in enumerate(unroll(head, aux, embeds, TTT_STEPS)):
        kl = F.kl_div(F.log_softmax(draft_logits.float(), dim=-1), teacher, log_target=True, reduction="none").sum(-1)
        valid = in_vocab.clone()
        valid[:, :step] = False  # step j has no chain before position j
        per_step.append((kl * valid).sum() / valid.sum())
    return sum(STEP_DECAY ** step * kl for step, kl in enumerate(per_step)), per_step


def draft_vocabulary(train_stream, vocab_size):
    """The DRAFT_VOCAB most frequent next tokens of the training stream (ties to the lower id), ascending, and the
    share of next tokens they cover."""
    counts = torch.bincount(train_stream[1:], minlength=vocab_size)
    top = torch.sort(counts, descending=True, stable=True).indices[:DRAFT_VOCAB]
    return top.sort().values, float(counts[top].sum()) / float(counts.sum())


def build_head(target_config, target_ids, device):
    torch.manual_seed(SEED)
    head = Eagle3Head(target_config).to(device)
    head.set_draft_vocabulary(target_ids)
    return head


def head_config(target_config):
    theta = target_config.rope_parameters["rope_theta"]
    return {
        "architectures": ["LlamaForCausalLMEagle3"], "model_type": "llama",
        "hidden_size": target_config.hidden_size, "intermediate_size": target_config.intermediate_size,
        "num_attention_heads": target_config.num_attention_heads,
        "num_key_value_heads": target_config.num_key_value_heads, "head_dim": target_config.head_dim,
        "num_hidden_layers": 1, "hidden_act": "silu", "rms_norm_eps": target_config.rms_norm_eps,
        "max_position_embeddings": target_config.max_position_embeddings, "rope_theta": theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "vocab_size": target_config.vocab_size, "draft_vocab_size": DRAFT_VOCAB,
        "target_hidden_size": target_config.hidden_size, "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False,
        "eagle_config": {"eagle_aux_hidden_state_layer_ids": list(AUX_LAYERS), "use_aux_hidden_state": True},
        "dtype": "bfloat16", "bos_token_id": None, "eos_token_id": target_config.eos_token_id, "pad_token_id": None,
    }


def save_head(head, target_config, out_dir):
    tensors = {name: (tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor).cpu().contiguous()
               for name, tensor in head.state_dict().items()}
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    write_json(os.path.join(out_dir, "config.json"), head_config(target_config))


def load_head(model_dir, target_config, device):
    """The saved head as the engine sees it: the bf16 tensors from disk in an fp32 module."""
    head = Eagle3Head(target_config).to(device)
    head.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors"), device=str(device)))
    return head.eval()


@torch.no_grad()
def step0_agreement(head, target, stream):
    """Share of held-out positions where the head's step-0 draft is the target's greedy token: the chance that the
    first of the k drafts is accepted."""
    inputs = heldout_windows(stream)
    aux, logits = target_features(target, inputs)
    _, draft_logits, _ = unroll(head, aux, target.get_input_embeddings()(inputs[:, 1:]), 1)[0]
    return float((head.to_target(draft_logits.argmax(-1)) == logits.argmax(-1)).float().mean())


@torch.no_grad()
def greedy(target, ids, new_tokens):
    """The target's greedy continuation of ids [B, n] (no KV cache: a full forward per token)."""
    for _ in range(new_tokens):
        next_ids = target(input_ids=ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        ids = torch.cat([ids, next_ids], dim=1)
    return ids


@torch.no_grad()
def drafts_by_length(head, target, tokens, first_length):
    """For one sequence tokens [1, T]: yields (L, logits [k, DRAFT_VOCAB]) for every known-prefix length L from
    first_length to T - 1, the k chained drafts' logits as the engine computes them. The step-0 entries are computed
    once over the whole sequence: each depends only on the target's features and tokens up to its position + 1
    (both causal), so entries 0..L-2 are the ones the engine's cache holds after L known tokens."""
    if first_length < 2:
        raise ValueError("a head needs 2 known tokens for its first step-0 entry")
    embed = target.get_input_embeddings()
    aux, _ = target_features(target, tokens)
    prenorm, logits, (keys, values) = unroll(head, aux, embed(tokens[:, 1:]), 1)[0]
    for length in range(first_length, tokens.shape[1]):
        last = length - 2  # the newest step-0 entry, (aux at L - 2, token L - 1): it drafts token L
        past = [(keys[:, :, :last + 1], values[:, :, :last + 1])]
        h, step_logits = prenorm[:, last:last + 1], logits[:, last:last + 1]
        chain = [step_logits]
        for j in range(1, TTT_STEPS):
            token = head.to_target(step_logits.argmax(-1))
            position = torch.tensor([last + j], device=tokens.device)
            h, step_logits, kv = head.step(h, embed(token), position, past, None)
            past.append(kv)
            chain.append(step_logits)
        yield length, torch.cat(chain, dim=1)[0]


@torch.no_grad()
def acceptance_length(head, target, stream):
    """Simulated greedy speculative decoding with k = TTT_STEPS on held-out prompts: at every prefix of the
    target's greedy continuation, the number of leading drafts equal to the target's next tokens; returns the mean
    plus one (the target's own token of each verify step) and the number of prefixes measured."""
    span = ACCEPT_PROMPT_TOKENS
    starts = torch.linspace(0, len(stream) - span - 1, ACCEPT_PROMPTS, device=stream.device).long()
    prompts = stream[starts[:, None] + torch.arange(span, device=stream.device)]
    accepted = []
    for sequence in greedy(target, prompts, ACCEPT_NEW_TOKENS):
        tokens = sequence[None]
        for length, logits in drafts_by_length(head, target, tokens, span):
            if length + TTT_STEPS > tokens.shape[1]:
                break
            matches = head.to_target(logits.argmax(-1)) == sequence[length:length + TTT_STEPS]
            accepted.append(int(matches.long().cumprod(0).sum()))
    return 1 + sum(accepted) / len(accepted), len(accepted)


@torch.no_grad()
def write_fixture(path, head, target, tokenizer):
    """The engine's reference: the fixture prompts' greedy continuations and the head's drafts after every prefix."""
    device = head.d2t.device
    cases = []
    for text in FIXTURE_PROMPTS:
        ids = tokenizer.encode(text).ids  # as train_small_model encodes its fixture prompts
        tokens = greedy(target, torch.tensor([ids], device=device), FIXTURE_NEW_TOKENS)
        drafts = [{"length": length, "draft_ids": head.to_target(logits.argmax(-1)).tolist(),
                   "top5": head.to_target(logits.topk(TOP_K, dim=-1).indices).tolist()}
                  for length, logits in drafts_by_length(head, target, tokens, len(ids))]
        cases.append({"prompt": text, "token_ids": tokens[0].tolist(), "prompt_length": len(ids), "drafts": drafts})
    write_json(path, {"model": "celer-tiny-py", "head": "celer-tiny-py-eagle3", "k": TTT_STEPS, "cases": cases})
    log(f"fixture: {len(cases)} prompts, {sum(len(case['drafts']) for case in cases)} prefixes -> {path}")


def write_model_card(path, facts):
    lines = [
        "---",
        "license: psf-2.0",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "---",
        "",
        "# celer-tiny-py-eagle3",
        "",
        "An EAGLE-3 draft head for Celer's default model, celer-tiny-py, for speculative decoding:",
        "",
        "```bash",
        "celer serve models/celer-tiny-py --speculative-config \\",
        "  '{\"method\": \"eagle3\", \"model\": \"models/celer-tiny-py-eagle3\", \"num_speculative_tokens\": 3}'",
        "```",
        "",
        "## Architecture",
        "",
        f"The public EAGLE-3 layout (`LlamaForCausalLMEagle3`, as vLLM's `Eagle3LlamaForCausalLM` loads it), "
        f"{facts['parameters']:,} parameters:",
        f"`fc` folds the target's hidden states entering its layers {', '.join(map(str, AUX_LAYERS))} "
        f"({len(AUX_LAYERS)} x {facts['hidden']}) into one of {facts['hidden']}; one Llama decoder layer",
        "(`midlayer`) whose attention reads the normed token embedding beside the normed hidden state",
        f"(q/k/v of input {2 * facts['hidden']}); a final norm and an `lm_head` over a draft vocabulary of "
        f"{DRAFT_VOCAB} tokens,",
        "mapped to target ids by `d2t` (target id = draft id + d2t) and `t2d` (which target ids it holds). The token",
        "embedding is the target's: the checkpoint has no `embed_tokens`. Each step's pre-norm hidden state is the",
        "next chained step's hidden input. Weights stored in bf16. No tokenizer files: it speaks its target's ids.",
        "",
        "## Training",
        "",
        f"The draft vocabulary is the {DRAFT_VOCAB} most frequent next tokens of the training stream, "
        f"{facts['coverage']:.1%} of its tokens.",
        "EAGLE-3's training-time test on the same corpus as the target (the Python",
        f"{facts['python_version']} standard library): {TTT_STEPS} chained steps unrolled over every position of "
        f"random {SEQ_LEN}-token windows,",
        "teacher-forced tokens, an attention mask giving each step the entries the inference cache holds. The loss of",
        f"step j is KL(target || head) on the draft vocabulary, weighted {STEP_DECAY}^j; positions where the target's",
        f"greedy token is outside the draft vocabulary are left out. Batches of {BATCH}, AdamW (peak learning rate",
        f"{PEAK_LR}, cosine decay), bf16 autocast, seed {SEED}; {facts['steps']} steps in {facts['seconds']:.0f} s "
        f"on {facts['device']}.",
        "",
        "## Evaluation",
        "",
        "fp32, from the saved bf16 weights, on held-out text:",
        "",
        f"- the head's first draft is the target's greedy token at {facts['agreement']:.1%} of positions;",
        f"- simulated greedy speculative decoding with k = {TTT_STEPS} (chained drafts at every prefix of "
        f"{ACCEPT_PROMPTS} prompts' {ACCEPT_NEW_TOKENS}-token",
        f"  greedy continuations, {facts['prefixes']} prefixes): {facts['acceptance']:.2f} tokens per target "
        "step (accepted drafts + 1).",
        "",
        "## License",
        "",
        "Trained on the Python standard library (PSF-2.0), from a model under the same terms.",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out-fixture", help="JSON file for the engine's reference drafts")
    args = parser.parse_args()
    deadline = time.time() + args.minutes * 60 - RESERVE_S
    if not torch.cuda.is_available():
        raise RuntimeError("training needs CUDA")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    os.makedirs(args.out_model, exist_ok=True)

    tokenizer, stdlib_dir, train_stream, val_stream, target = load_teacher(args.target, args.out_model, device)
    target_ids, coverage = draft_vocabulary(train_stream, target.config.vocab_size)
    log(f"draft vocabulary: {DRAFT_VOCAB} tokens, {coverage:.1%} of the training stream's next tokens")
    head = build_head(target.config, target_ids, device)
    parameters = sum(p.numel() for p in head.parameters())
    log(f"head: {parameters:,} parameters")
    def ttt(inputs):
        loss, per_step = ttt_loss(head, target, inputs)
        return loss, lambda: f"loss {float(loss):.4f}, KL by step " + " ".join(f"{float(kl):.4f}" for kl in per_step)

    steps, seconds = budgeted_training(head, train_stream, deadline, ttt, SEED, PEAK_LR)
    save_head(head, target.config, args.out_model)
    del head, target

    set_reference_numerics()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        args.target, dtype=torch.float32, attn_implementation="eager").to(device).eval()
    saved = load_head(args.out_model, reference.config, device)
    agreement = step0_agreement(saved, reference, val_stream)
    acceptance, prefixes = acceptance_length(saved, reference, val_stream)
    log(f"trained {steps} steps in {seconds:.0f} s; held-out step-0 agreement {agreement:.4f}, "
        f"simulated acceptance length (k = {TTT_STEPS}) {acceptance:.3f} over {prefixes} prefixes")
    if args.out_fixture:
        write_fixture(args.out_fixture, saved, reference, tokenizer)
    write_model_card(os.path.join(args.out_model, "README.md"), {
        "parameters": parameters, "hidden": reference.config.hidden_size, "coverage": coverage,
        "python_version": os.path.basename(stdlib_dir).replace("python", ""), "steps": steps, "seconds": seconds,
        "device": torch.cuda.get_device_name(0), "agreement": agreement, "acceptance": acceptance,
        "prefixes": prefixes,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
