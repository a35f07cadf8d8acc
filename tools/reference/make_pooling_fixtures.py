#!/usr/bin/env python3
"""Tiny random-weight embedding models in the Hub's sentence-transformers layouts, with sentence-transformers' outputs.

Usage: python3 tools/reference/make_pooling_fixtures.py --out DIR [--only NAME ...] [--keep-going]

Writes DIR/<name>/ as a complete sentence-transformers model directory plus reference.json, for each of fixtures() and
for llama-embed-mean-prompt:
  * qwen3-embed-lasttoken: as Qwen3-Embedding ships: config.json says Qwen3ForCausalLM, the weights are the base
    Qwen3Model's, without the "model." prefix or lm_head; last-token pooling, Normalize, a query prompt;
  * llama-embed-mean: config.json says LlamaModel, unprefixed weights; mean pooling, no Normalize;
  * qwen2-embed-cls: a causal-LM checkpoint reused as an embedder: Qwen2ForCausalLM, "model."-prefixed keys, q/k/v
    biases, tied lm_head not stored; CLS (first-token) pooling, Normalize.
  * llama-embed-mean-prompt: llama-embed-mean's layout with sentence-transformers' prompts: a default prompt
    (default_prompt_name "query"), mean pooling with include_prompt false, Normalize, and a WordPiece tokenizer
    ([CLS] ... [SEP], kept in the fixture: its references are texts through SentenceTransformer.encode).
modules.json and the module folders are what SentenceTransformer.save writes; config.json, the weights and the tokenizer
files are then replaced by the fixture's own, and 1_Pooling/config.json by the pooling_mode_* form the Hub's carry.

How the references are computed (Celer must match this, not "the model"); llama-embed-mean-prompt's at the end:
  * weights stored in bf16 are loaded back as float32, eager attention, TF32 off;
  * each prompt is one sequence of token ids (batch of 1, attention mask all ones) through SentenceTransformer.forward:
    no tokenizer, no truncation; the 150-token case spans chunks of the engine's prefill, within max_seq_length (200);
  * "embedding" is out["sentence_embedding"][0]; "embedding_first_32" follows vLLM's Matryoshka rule for dimensions=32:
    the first 32 values, L2-normalized again when the model normalizes;
  * the loaded weights are compared with the file and every output with AutoModel's last_hidden_state pooled by hand,
    so a layout the loader silently ignored (random init) fails the run. sentence-transformers loads all three,
    qwen2-embed-cls's prefixed ForCausalLM keys included (its Transformer module uses AutoModel, which strips the
    prefix; seen with 6.0.1 and transformers 5.17), so no reference comes from the hand path.
llama-embed-mean-prompt: "texts" holds, for each of PROMPTED_TEXTS, the text, the token ids HF's tokenizer gives the
prompted text, and SentenceTransformer.encode(PROMPTED_TEXTS, batch_size=1)'s vector (encode applies the default
prompt itself); "cases" the same in the other fixtures' shape, with "excluded_prompt_tokens": sentence-transformers' prompt_length
(the prompt tokenized alone, less its trailing [SEP]). Every vector is cross-checked with AutoModel's hidden states
of the prompted ids averaged from position prompt_length on, so a prompt encode did not apply or did not mask fails
the run.
"""

import functools
import json
import os
import random
import re
import shutil
import string
import sys
import tempfile

# Nothing can be downloaded where this runs: fail at once instead of retrying the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
import sentence_transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402

try:  # sentence-transformers 6; 5.x and older only have the (now deprecated) models alias
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer  # noqa: E402
except ImportError:
    from sentence_transformers.models import Normalize, Pooling, Transformer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as base  # noqa: E402

HIDDEN = base.HIDDEN
PROMPT_LENGTHS = (1, 5, 17, 40, 150)
MATRYOSHKA_DIMS = 32
MAX_SEQ_LENGTH = 200  # above the longest case (150), below max_position_embeddings (256): the engine caps inputs at it
MODEL_MAX_LENGTH = 256
PAD, EOS = "<pad>", "<eos>"
QUERY_PROMPTS = {"query": "Instruct: find code\nQuery:", "document": ""}
CROSS_CHECK_TOLERANCE = 1e-5  # same fp32 computation twice; only summation order may differ
# transformers 5 renamed from_pretrained's torch_dtype to dtype (the old name only warns, or is gone).
DTYPE_KWARG = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
LEGACY_POOLING_KEYS = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens",
                       "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                       "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


def _config(architecture, model_type, **extra):
    """A 5.x-style config.json (rope_parameters, dtype) with the sizes every fixture shares."""
    return {"architectures": [architecture], "model_type": model_type,
            **base._common(2, 128, 4, 2, 256, True),
            "head_dim": 16, "rms_norm_eps": 1e-6, "pad_token_id": 0, "eos_token_id": 1,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            **extra, "dtype": "bfloat16", "transformers_version": transformers.__version__}


PROMPT_NAME = "query"
DEFAULT_PROMPT = "Represent this question about code for retrieving the functions that answer it: "
PROMPTED_TEXTS = [
    "how do I reverse a list in python?",
    "def reverse(items): return items[::-1]",
    "The quick brown fox jumps over the lazy dog.",
    # Long enough for several of the engine's 16-token prefill chunks after the prompt.
    "A function that reads a file line by line, strips the whitespace from every line, skips the empty ones and "
    "returns the rest as a list, so that the caller can count the lines, sort them or write them back to another "
    "file without the blank lines in between.",
    "zebrafish xylophone quokka",  # outside the vocabulary's words: split into WordPiece characters
    "",  # the prompt alone: only the trailing [SEP] is pooled
]
# The vocabulary's whole words come from these texts (the last two texts add none of their own).
VOCAB_TEXTS = [DEFAULT_PROMPT, *PROMPTED_TEXTS[:4]]
PROMPT_FIXTURE = (83, "llama-embed-mean-prompt")


def fixtures():
    """(index, name, config.json, keys with "model." prefix, pooling, normalize, prompts). The indices keep prompts
    and seeds apart from the other fixture scripts' (0..17, 50..64)."""
    qwen_window = {"use_sliding_window": False, "sliding_window": None, "max_window_layers": 2}
    return [
        (80, "qwen3-embed-lasttoken", _config("Qwen3ForCausalLM", "qwen3", attention_bias=False, **qwen_window),
         False, "lasttoken", True, QUERY_PROMPTS),
        (81, "llama-embed-mean", _config("LlamaModel", "llama", attention_bias=False, mlp_bias=False, pretraining_tp=1),
         False, "mean", False, None),
        # Qwen2's q/k/v biases come with the architecture (no config key); fill_weights makes them random.
        (82, "qwen2-embed-cls", _config("Qwen2ForCausalLM", "qwen2", **qwen_window),
         True, "cls", True, None),
    ]


def save_checkpoint(staging, config_dict, prefixed, seed):
    """Random weights into staging/ as the base model (what sentence-transformers' Transformer saves: no prefix) and,
    for a causal-LM checkpoint, staging/causal/ as the whole ForCausalLM (prefixed keys). Returns the file to ship."""
    base.write_json(os.path.join(staging, "config.json"), config_dict)
    config = transformers.AutoConfig.from_pretrained(staging)
    auto = transformers.AutoModelForCausalLM if prefixed else transformers.AutoModel
    torch.manual_seed(seed)
    model = auto.from_config(config).to(torch.float32)
    base.fill_weights(model, seed)
    model.to(torch.bfloat16)
    model.base_model.save_pretrained(staging)
    if prefixed:
        model.save_pretrained(os.path.join(staging, "causal"))
    # save_pretrained writes the class's own architectures; the file under test is the spec's.
    base.write_json(os.path.join(staging, "config.json"), config_dict)
    shipped = os.path.join(staging, "causal" if prefixed else "", "model.safetensors")
    drop_lm_head(shipped)
    return shipped


def drop_lm_head(path):
    """Tied checkpoints on the Hub store no lm_head.weight; rewrite the file without it if transformers kept one."""
    with safe_open(path, framework="pt") as f:
        if "lm_head.weight" not in f.keys():
            return
        metadata = f.metadata() or {"format": "pt"}
    tensors = load_file(path)
    del tensors["lm_head.weight"]
    save_file(tensors, path, metadata=metadata)


def save_tokenizer(model_dir):
    """A WordLevel tokenizer over "<pad>", "<eos>", t2..t511 (ids = positions). Only loaded, never used for the
    references: sentence-transformers' Transformer module needs a processor to exist."""
    vocab = {PAD: 0, EOS: 1, **{f"t{i}": i for i in range(2, base.VOCAB)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens([PAD, EOS])  # already in the vocabulary: they keep ids 0 and 1
    tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    base.write_json(os.path.join(model_dir, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "pad_token": PAD, "eos_token": EOS,
        "model_max_length": MODEL_MAX_LENGTH, "clean_up_tokenization_spaces": False})


def save_wordpiece_tokenizer(model_dir):
    """A BERT-style WordPiece tokenizer both HF and Celer run: lower-casing BertNormalizer, BertPreTokenizer, the words
    of VOCAB_TEXTS, single characters and ##characters, and the [CLS] $A [SEP] template, whose trailing [SEP] is the
    special token sentence-transformers' prompt_length leaves out."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for text in VOCAB_TEXTS for w in re.findall(r"\w+", text.lower())})
    chars = string.ascii_lowercase + string.digits
    pieces = [*specials, *string.punctuation, *chars, *(f"##{c}" for c in chars), *(w for w in words if len(w) > 1)]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    if len(vocab) > base.VOCAB:
        raise RuntimeError(f"the WordPiece vocabulary has {len(vocab)} entries, more than the model's {base.VOCAB}")
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(specials)  # already in the vocabulary: they keep their ids
    tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    base.write_json(os.path.join(model_dir, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "unk_token": "[UNK]", "model_max_length": MODEL_MAX_LENGTH, "clean_up_tokenization_spaces": False})
    return tokenizer


def save_sentence_transformer(staging, model_dir, pooling, normalize, prompts, default_prompt_name=None,
                              include_prompt=True):
    """SentenceTransformer.save over the staged checkpoint: modules.json, the module folders and the
    sentence-transformers config files exactly as the installed version writes them."""
    modules = [Transformer(staging, model_kwargs={DTYPE_KWARG: torch.bfloat16}),
               Pooling(HIDDEN, pooling_mode=pooling, include_prompt=include_prompt)]
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", prompts=prompts, default_prompt_name=default_prompt_name,
                             similarity_fn_name="cosine")
    st.save(model_dir, create_model_card=False)
    with safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        architectures = json.load(f).get("architectures")
    prefix = "with" if any(k.startswith("model.") for k in keys) else "without"
    print(f"  sentence-transformers saved {len(keys)} tensors {prefix} the model. prefix, "
          f"architectures {architectures} (both replaced by the fixture's own)", flush=True)


def finish_layout(model_dir, pooling, include_prompt=True):
    """The files sentence-transformers writes differently from the Hub's checkpoints, rewritten as the latter."""
    path = os.path.join(model_dir, "sentence_bert_config.json")
    with open(path, encoding="utf-8") as f:
        bert_config = json.load(f)
    base.write_json(path, {**bert_config, "max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    base.write_json(os.path.join(model_dir, "1_Pooling", "config.json"), {
        "word_embedding_dimension": HIDDEN,
        **{key: mode == pooling for mode, key in LEGACY_POOLING_KEYS.items()}, "include_prompt": include_prompt})


def check_layout(model_dir, prefixed, word_level=True):
    """bf16 tensors, named with the "model." prefix or without it as the fixture says, and no lm_head."""
    count = base.verify_saved_weights(model_dir, "bfloat16", True)
    with safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt") as f:
        wrong = [k for k in f.keys() if k.startswith("model.") != prefixed or k.startswith("lm_head.")]
    if wrong:
        raise RuntimeError(f"{model_dir}: unexpected tensor names {wrong[:4]}")
    if not word_level:
        return count
    # The references never tokenize, so this only warns. transformers 5.17 ignores tokenizer.json's model when
    # config.json says model_type "qwen2" (it builds a byte-level BPE Qwen2Tokenizer from the vocabulary, which turns
    # "t2" into []), but not for "qwen3" or "llama": expect the warning for qwen2-embed-cls.
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    found = (tokenizer("t2 t511 t7", add_special_tokens=False)["input_ids"], tokenizer.pad_token_id,
             tokenizer.eos_token_id)
    if found != ([2, 511, 7], 0, 1):
        print(f"  WARNING: {type(tokenizer).__name__} gives (ids, pad, eos) {found}, not ([2, 511, 7], 0, 1)",
              flush=True)
    return count


def check_loaded_weights(model, model_dir):
    """Every stored tensor must be in the loaded model, equal after bf16 -> fp32, and every parameter stored: a key
    the loader did not match leaves a randomly initialised parameter behind, with only a log line to show for it."""
    params = {k: v.detach().cpu() for k, v in model.named_parameters()}
    stored = load_file(os.path.join(model_dir, "model.safetensors"))
    seen = set()
    for key, value in stored.items():
        name = key[len("model."):] if key.startswith("model.") and key not in params else key
        if name not in params or params[name].dtype != torch.float32 or not torch.equal(params[name], value.float()):
            raise RuntimeError(f"{model_dir}: stored {key} is not what {type(model).__name__} loaded")
        seen.add(name)
    if set(params) - seen:
        raise RuntimeError(f"{model_dir}: parameters not in the file: {sorted(set(params) - seen)[:4]}")


def load_sentence_transformer(model_dir, device):
    st = SentenceTransformer(model_dir, device=str(device), local_files_only=True,
                             model_kwargs={DTYPE_KWARG: torch.float32, "attn_implementation": "eager"})
    return st.eval()


@torch.inference_mode()
def st_embed(st, ids, device):
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    out = st.forward({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)})
    return out["token_embeddings"][0].float().cpu(), out["sentence_embedding"][0].float().cpu()


@torch.inference_mode()
def hand_embed(model, ids, pooling, normalize, device):
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    hidden = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state[0].float().cpu()
    pooled = {"lasttoken": hidden[-1], "mean": hidden.mean(dim=0), "cls": hidden[0]}[pooling]
    return hidden, F.normalize(pooled, dim=-1) if normalize else pooled


def build_one(index, name, config_dict, prefixed, pooling, normalize, prompts, out_dir, device):
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)  # no stale files from an earlier layout
    seed = 1000 + 100 * index
    with tempfile.TemporaryDirectory() as staging:
        shipped = save_checkpoint(staging, config_dict, prefixed, seed)
        save_tokenizer(staging)
        save_sentence_transformer(staging, model_dir, pooling, normalize, prompts)
        shutil.copy(shipped, os.path.join(model_dir, "model.safetensors"))
        for file in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(staging, file), os.path.join(model_dir, file))
    finish_layout(model_dir, pooling)
    tensor_count = check_layout(model_dir, prefixed)

    hand_model = transformers.AutoModel.from_pretrained(
        model_dir, attn_implementation="eager", **{DTYPE_KWARG: torch.float32}).to(device).eval()
    check_loaded_weights(hand_model, model_dir)
    st = load_sentence_transformer(model_dir, device)
    check_loaded_weights(st[0].auto_model, model_dir)

    prompt_rng = random.Random(7000 + index)
    cases, norms = [], []
    for length in PROMPT_LENGTHS:
        ids = [prompt_rng.randrange(2, base.VOCAB) for _ in range(length)]
        tokens, embedding = st_embed(st, ids, device)
        hidden, by_hand = hand_embed(hand_model, ids, pooling, normalize, device)
        diff = max(float((tokens - hidden).abs().max()), float((embedding - by_hand).abs().max()))
        if diff > CROSS_CHECK_TOLERANCE:
            raise RuntimeError(f"{name}: sentence-transformers and hand pooling differ by {diff} (length {length})")
        if not torch.isfinite(embedding).all():
            raise RuntimeError(f"{name}: non-finite embedding (length {length})")
        # Normalising the normalised vector's prefix equals normalising the raw prefix (a scalar factor apart).
        first = F.normalize(embedding[:MATRYOSHKA_DIMS], dim=-1) if normalize else embedding[:MATRYOSHKA_DIMS]
        cases.append({"prompt_token_ids": ids, "embedding": embedding.tolist(), "embedding_first_32": first.tolist()})
        norms.append(f"{length}:{float(embedding.norm()):.6f}")

    base.write_json(os.path.join(model_dir, "reference.json"), {
        "model": name, "architecture": config_dict["architectures"][0], "pooling": pooling, "normalize": normalize,
        "hidden_size": HIDDEN, "transformers_version": transformers.__version__,
        "sentence_transformers_version": sentence_transformers.__version__, "torch_version": torch.__version__,
        "dtype": "float32", "storage_dtype": "bfloat16", "weight_seed": seed, "cases": cases})
    # The tokenizer was there for sentence-transformers' loader only: the references and Celer's tests are token ids,
    # and Celer has no WordLevel tokenizer model, so the fixture ships without it (the engine then runs tokenizer-less).
    for file in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(os.path.join(model_dir, file))
    files = sorted(os.path.relpath(os.path.join(root, f), model_dir) for root, _, fs in os.walk(model_dir) for f in fs)
    print(f"  {name}: seed {seed}, {tensor_count} tensors, embedding norms (length:norm) {' '.join(norms)}",
          flush=True)
    print(f"  {name}: files {' '.join(files)}", flush=True)


def prompt_length(tokenizer, prompt):
    """sentence-transformers' prompt_length: the prompt tokenized alone, less a trailing special token."""
    ids = tokenizer([prompt])["input_ids"][0]
    return len(ids) - 1 if ids[-1] in tokenizer.all_special_ids else len(ids)


def build_prompted(index, name, out_dir, device):
    """llama-embed-mean-prompt: see the module docstring."""
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    seed = 1000 + 100 * index
    config_dict = _config("LlamaModel", "llama", attention_bias=False, mlp_bias=False, pretraining_tp=1)
    prompts = {PROMPT_NAME: DEFAULT_PROMPT, "document": ""}
    with tempfile.TemporaryDirectory() as staging:
        shipped = save_checkpoint(staging, config_dict, False, seed)
        raw_tokenizer = save_wordpiece_tokenizer(staging)
        save_sentence_transformer(staging, model_dir, "mean", True, prompts, default_prompt_name=PROMPT_NAME,
                                  include_prompt=False)
        shutil.copy(shipped, os.path.join(model_dir, "model.safetensors"))
        for file in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(staging, file), os.path.join(model_dir, file))
    finish_layout(model_dir, "mean", include_prompt=False)
    tensor_count = check_layout(model_dir, False, word_level=False)

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    hand_model = transformers.AutoModel.from_pretrained(
        model_dir, attn_implementation="eager", **{DTYPE_KWARG: torch.float32}).to(device).eval()
    check_loaded_weights(hand_model, model_dir)
    st = load_sentence_transformer(model_dir, device)
    check_loaded_weights(st[0].auto_model, model_dir)
    pooling_module = next(m for m in st if isinstance(m, Pooling))
    if st.default_prompt_name != PROMPT_NAME or st.prompts.get(PROMPT_NAME) != DEFAULT_PROMPT or pooling_module.include_prompt:
        raise RuntimeError(f"{name}: loaded default prompt {st.default_prompt_name!r} = {st.prompts!r}, "
                           f"include_prompt {pooling_module.include_prompt}")
    length = prompt_length(tokenizer, DEFAULT_PROMPT)
    if length != len(tokenizer([DEFAULT_PROMPT])["input_ids"][0]) - 1:
        raise RuntimeError(f"{name}: the prompt tokenized alone does not end in a special token")

    with torch.inference_mode():
        # One text a batch: no padding, so the cross-check below compares the same matrix shapes.
        encoded = st.encode(PROMPTED_TEXTS, batch_size=1, convert_to_tensor=True).float().cpu()
    texts, cases, norms = [], [], []
    for text, embedding in zip(PROMPTED_TEXTS, encoded):
        ids = tokenizer(DEFAULT_PROMPT + text)["input_ids"]
        # transformers must run tokenizer.json as it is (no template of its own): the same ids as the tokenizers library.
        if ids != raw_tokenizer.encode(DEFAULT_PROMPT + text).ids or ids[0] != tokenizer.cls_token_id:
            raise RuntimeError(f"{name}: {type(tokenizer).__name__} gives {ids} for {text!r}")
        if len(ids) <= length or len(ids) > MAX_SEQ_LENGTH:
            raise RuntimeError(f"{name}: {text!r} makes {len(ids)} tokens with a prompt of {length}")
        with torch.inference_mode():
            input_ids = torch.tensor([ids], dtype=torch.long, device=device)
            hidden = hand_model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        by_hand = F.normalize(hidden[0, length:].float().mean(dim=0).cpu(), dim=-1)
        diff = float((embedding - by_hand).abs().max())
        if diff > CROSS_CHECK_TOLERANCE:
            raise RuntimeError(f"{name}: encode and the prompt-masked mean by hand differ by {diff} for {text!r}")
        if not torch.isfinite(embedding).all():
            raise RuntimeError(f"{name}: non-finite embedding for {text!r}")
        first = F.normalize(embedding[:MATRYOSHKA_DIMS], dim=-1)
        texts.append({"text": text, "input_ids": ids, "embedding": embedding.tolist()})
        cases.append({"prompt_token_ids": ids, "embedding": embedding.tolist(), "embedding_first_32": first.tolist(),
                      "excluded_prompt_tokens": length})
        norms.append(f"{len(ids)}:{float(embedding.norm()):.6f}")

    base.write_json(os.path.join(model_dir, "reference.json"), {
        "model": name, "architecture": config_dict["architectures"][0], "pooling": "mean", "normalize": True,
        "hidden_size": HIDDEN, "transformers_version": transformers.__version__,
        "sentence_transformers_version": sentence_transformers.__version__, "torch_version": torch.__version__,
        "dtype": "float32", "storage_dtype": "bfloat16", "weight_seed": seed, "prompt_name": PROMPT_NAME,
        "prompt": DEFAULT_PROMPT, "prompt_length": length, "texts": texts, "cases": cases})
    files = sorted(os.path.relpath(os.path.join(root, f), model_dir) for root, _, fs in os.walk(model_dir) for f in fs)
    print(f"  {name}: seed {seed}, {tensor_count} tensors, prompt_length {length}, "
          f"embedding norms (tokens:norm) {' '.join(norms)}", flush=True)
    print(f"  {name}: files {' '.join(files)}", flush=True)


def main():
    print(f"make_pooling_fixtures: sentence-transformers {sentence_transformers.__version__}", flush=True)
    return base.run_fixtures("make_pooling_fixtures", __doc__.split("\n")[0], [
        *((spec[1], functools.partial(build_one, *spec)) for spec in fixtures()),
        (PROMPT_FIXTURE[1], functools.partial(build_prompted, *PROMPT_FIXTURE))])


if __name__ == "__main__":
    sys.exit(main())
