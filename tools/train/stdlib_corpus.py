"""The training corpus (the Python standard library's own sources) and its byte-level BPE tokenizer.

Used by train_small_model.py; needs only the `tokenizers` package (plus `transformers` for the
load check).
"""

import glob
import json
import os
import re

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ENDOFTEXT = "<|endoftext|>"
SPECIAL_TOKENS = [ENDOFTEXT, "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 in this order
SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__"}
HOLDOUT_EVERY = 50  # one file in 50 (2%) is held out for validation
HOLDOUT_OFFSET = 25

# ChatML, the same text as Qwen's and the usual HF examples: no system prompt is injected.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def find_stdlib_dir():
    """/usr/lib/python3.12 if present, else the newest /usr/lib/python3.N (never a venv)."""
    preferred = "/usr/lib/python3.12"
    if os.path.isfile(os.path.join(preferred, "os.py")):
        return preferred
    candidates = [d for d in glob.glob("/usr/lib/python3.*") if os.path.isfile(os.path.join(d, "os.py"))]
    if not candidates:
        raise RuntimeError("no Python standard library sources under /usr/lib/python3.*")

    def minor(path):
        match = re.search(r"python3\.(\d+)$", path)
        return int(match.group(1)) if match else -1

    return max(candidates, key=minor)


def list_sources(root):
    """Sorted relative paths of .py files, skipping test suites, IDLE, lib2to3 and installed packages."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                paths.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(paths)


def load_corpus(root):
    """Returns (train_texts, heldout_texts, heldout_paths) in the fixed sorted file order.
    Files that are not valid UTF-8 are skipped (the stdlib has none that matter)."""
    train, heldout, heldout_paths = [], [], []
    for index, rel in enumerate(list_sources(root)):
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError) as error:
            print(f"  skipping {rel}: {error}", flush=True)
            continue
        if not text.strip():
            continue
        if index % HOLDOUT_EVERY == HOLDOUT_OFFSET:
            heldout.append(text)
            heldout_paths.append(rel)
        else:
            train.append(text)
    return train, heldout, heldout_paths


def train_tokenizer(texts, vocab_size):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected_id:
            raise RuntimeError(f"{token} got id {tokenizer.token_to_id(token)}, expected {expected_id}")
    return tokenizer


def save_tokenizer(tokenizer, model_dir, model_max_length):
    tokenizer.save(os.path.join(model_dir, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "add_bos_token": False,
        "eos_token": ENDOFTEXT,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def check_with_transformers(tokenizer, model_dir):
    """Loads the saved files the way users will and checks ids and the chat template.
    Returns a list of problems (empty when all is well); the caller reports them loudly."""
    import transformers

    problems = []
    sample = 'def main(argv=None):\n    """Run it."""\n    return 0  # ok\n'
    messages = [{"role": "system", "content": "You write Python."},
                {"role": "user", "content": "Reverse a list."}]
    expected_chat = ("<|im_start|>system\nYou write Python.<|im_end|>\n"
                     "<|im_start|>user\nReverse a list.<|im_end|>\n<|im_start|>assistant\n")
    loaders = {
        "PreTrainedTokenizerFast": lambda: transformers.PreTrainedTokenizerFast(
            tokenizer_file=os.path.join(model_dir, "tokenizer.json"), eos_token=ENDOFTEXT,
            chat_template=CHAT_TEMPLATE),
        "AutoTokenizer": lambda: transformers.AutoTokenizer.from_pretrained(model_dir),
    }
    for label, load in loaders.items():
        try:
            hf = load()
            ids = hf.encode(sample)
            if ids != tokenizer.encode(sample).ids:
                problems.append(f"{label}: encode differs from tokenizers: {ids}")
            if hf.decode(ids) != sample:
                problems.append(f"{label}: decode does not round-trip")
            chat = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if chat != expected_chat:
                problems.append(f"{label}: chat template gave {chat!r}")
            if hf.eos_token_id != 0 or hf.bos_token_id is not None:
                problems.append(f"{label}: eos {hf.eos_token_id}, bos {hf.bos_token_id}")
        except Exception as error:  # reported, not fatal: the training run is one-shot
            problems.append(f"{label}: {type(error).__name__}: {error}")
    chat_ids = tokenizer.encode(expected_chat).ids
    if chat_ids[0] != 1 or 2 not in chat_ids:
        problems.append(f"ChatML markers not encoded as single special tokens: {chat_ids[:8]}")
    return problems
