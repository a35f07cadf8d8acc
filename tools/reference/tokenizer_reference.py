#!/usr/bin/env python3
"""Record what Hugging Face transformers 5 and the tokenizers library (tokenizer.json alone) produce for a fixed list
of tricky texts, one JSON per tokenizer folder, for Celer.Tokenization's parity decisions.

transformers 5 does not always take tokenizer.json as is: AutoTokenizer picks a Python class (LlamaTokenizer,
GemmaTokenizer, Qwen2Tokenizer, TokenizersBackend, ...) and some classes rebuild the normalizer / pre-tokenizer /
decoder from their own code. Which class it picks depends on tokenizer_config.json's tokenizer_class AND on the
model_type in config.json (AutoTokenizer falls back to TokenizersBackend, the file as is, when the model type's
tokenizer differs from tokenizer_class). So each folder is loaded several ways ("scenarios"):

  auto:<model_type>   AutoTokenizer on a temporary copy whose config.json is {"model_type": <model_type>}
  auto:no-config      AutoTokenizer on a temporary copy without config.json
  class:<name>        the class named by tokenizer_config.json's tokenizer_class, from_pretrained directly
  file                tokenizers.Tokenizer.from_file(tokenizer.json)

The first auto:<model_type> scenario that loads is the primary one ("ids_transformers" in each case). Every load and
every call is guarded: an error is recorded in the JSON and the rest goes on.

No network or Hugging Face cache is needed (HF_HUB_OFFLINE=1 is set before transformers is imported):

    python3 tools/reference/tokenizer_reference.py --out /tmp/tokref .cache/test-assets/tokenizers/*/
    python3 tools/reference/tokenizer_reference.py --out /tmp/tokref --model-types llama,mistral path/to/llama2

Exit status: 0 when every folder's file load and at least one transformers scenario worked, 1 otherwise (the JSONs
are written either way).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The model types a real checkpoint with this tokenizer_class carries in its config.json, most common first.
# (Mistral v0.1 ships LlamaTokenizer files with model_type "mistral"; Llama 3 ships PreTrainedTokenizerFast.)
MODEL_TYPES_BY_CLASS = {
    "LlamaTokenizer": ["llama", "mistral"],
    "LlamaTokenizerFast": ["llama", "mistral"],
    "PreTrainedTokenizerFast": ["llama"],
    "Qwen2Tokenizer": ["qwen3", "qwen2"],
    "Qwen2TokenizerFast": ["qwen3", "qwen2"],
    "GemmaTokenizer": ["gemma3", "gemma3_text"],
    "GemmaTokenizerFast": ["gemma3", "gemma3_text"],
}

SPECIALS = "<s></s><unk><|begin_of_text|><|end_of_text|><|eot_id|><|im_start|><|im_end|><|endoftext|><bos><eos><pad>"

TEXTS = [
    "",
    " ",
    "  ",
    "   ",
    "    ",
    " " * 16,
    " " * 33,
    " " * 100,
    "Hello",
    " Hello",
    "  Hello",
    "   Hello",
    "Hello ",
    "Hello  ",
    "Hello world",
    "Hello  world",
    "Hello   world",
    " Hello world ",
    "  leading and trailing  ",
    "\n",
    "\n\n",
    "\n\n\n",
    "\n" * 20,
    " \n",
    "\n ",
    "a\nb",
    "a \n b",
    "Hello\n\nworld",
    "line one\nline two\n",
    "\t",
    "\t\t",
    "\t" * 10,
    "a\tb",
    " \t \n \r\n ",
    "\r\n",
    "Hello\r\nworld",
    "1",
    "12",
    "123",
    "1234",
    "12345678901234567890",
    "3.14159 and 2,718",
    "Year 2024: 100% done",
    "café naïve résumé",
    "Ünïcödé",
    "e\u0301",  # decomposed é: NFC normalizers recompose it
    "ﬁ ligature",
    "こんにちは世界",
    "你好，世界！",
    "안녕하세요",
    "Привет, мир",
    "مرحبا بالعالم",
    "😀",
    "😀😀 👍🏽 👨‍👩‍👧",
    "emoji 🎉 in text",
    "\u200b zero\u200bwidth",
    "\u00a0nbsp\u00a0",
    "\u2581already\u2581metaspace",
    "▁▁▁",
    "<s>",
    "</s>",
    "<s>Hello",
    "<s> Hello",
    "Hello<s>world",
    "Hello <s> world",
    " <s>",
    "<unk>",
    "<|begin_of_text|>",
    "<|begin_of_text|>Hello",
    "<|begin_of_text|> Hello",
    "<|im_start|>",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<bos>",
    "<bos>Hello",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "<s>[INST] What is the capital of France? [/INST] Paris</s>",
    SPECIALS,
    "not special: <s >, < s>, <|im_start, im_end|>",
    "def f(x):\n    return x  # comment\n\n\nclass A:\n\tpass\n",
    "    indented code",
    "x = [1, 2, 3]; y = {'a': 1}",
    "It's I'm you're we've they'll he'd IT'S",
    "Don't   stop\n\n\n  me now!!!",
    "https://example.com/path?q=1&r=2#frag",
    "a" * 50,
    "ab " * 30,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Mixed: Hello  世界 😀\n\t123  <s> end  ",
]


def guarded(fn):
    try:
        return {"value": fn()}
    except Exception as e:  # recorded, never fatal
        return {"error": f"{type(e).__name__}: {e}"}


def pipeline_parts(backend):
    """The normalizer / pre-tokenizer / post-processor / decoder a tokenizers.Tokenizer actually runs (no vocab)."""
    data = json.loads(backend.to_str())
    return {k: data.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens")} | {
        "model": {k: v for k, v in data.get("model", {}).items() if k not in ("vocab", "merges")}
    }


def describe(tok):
    info = {"class": type(tok).__name__, "module": type(tok).__module__,
            "mro": [c.__name__ for c in type(tok).__mro__][:6]}
    for attr in ("add_bos_token", "add_eos_token", "legacy", "add_prefix_space", "clean_up_tokenization_spaces",
                 "bos_token", "eos_token", "unk_token", "pad_token", "split_special_tokens", "vocab_size"):
        try:
            value = getattr(tok, attr)
            json.dumps(value)
            info[attr] = value
        except Exception:
            pass
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is not None:
        r = guarded(lambda: pipeline_parts(backend))
        info["pipeline"] = r.get("value", r)
    return info


def staged_copy(folder, tmp_root, name, config):
    """A copy of the tokenizer folder (symlinked files) without config.json, plus the given config.json if any."""
    dest = Path(tmp_root) / name
    dest.mkdir(parents=True)
    for f in Path(folder).iterdir():
        if f.is_file() and f.name != "config.json":
            try:
                os.symlink(f.resolve(), dest / f.name)
            except OSError:
                shutil.copy(f, dest / f.name)
    if config is not None:
        (dest / "config.json").write_text(json.dumps(config))
    return dest


def load_scenarios(folder, model_types, tmp_root):
    """[(scenario, tokenizer or None, load record)]"""
    import transformers
    from transformers import AutoTokenizer

    out = []
    tk_config = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
    tk_class = tk_config.get("tokenizer_class")

    def attempt(scenario, fn, **extra):
        try:
            tok = fn()
            rec = {"scenario": scenario, **extra, **describe(tok)}
            out.append((scenario, tok, rec))
        except Exception as e:
            out.append((scenario, None, {"scenario": scenario, **extra, "error": f"{type(e).__name__}: {e}",
                                         "traceback": traceback.format_exc()[-4000:]}))

    for i, mt in enumerate(model_types):
        path = staged_copy(folder, tmp_root, f"auto-{i}-{mt}", {"model_type": mt})
        attempt(f"auto:{mt}", lambda: AutoTokenizer.from_pretrained(str(path)), config_json={"model_type": mt})
    path = staged_copy(folder, tmp_root, "auto-no-config", None)
    attempt("auto:no-config", lambda: AutoTokenizer.from_pretrained(str(path)), config_json=None)
    if tk_class:
        def by_class():
            from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
            cls = tokenizer_class_from_name(tk_class)
            if cls is None and not tk_class.endswith("Fast"):
                cls = tokenizer_class_from_name(tk_class + "Fast")
            if cls is None:
                cls = getattr(transformers, tk_class)
            return cls.from_pretrained(str(path))
        attempt(f"class:{tk_class}", by_class, config_json=None)
    return out


def run_transformers(tok, text, add_special):
    rec = {}
    r = guarded(lambda: tok.encode(text, add_special_tokens=add_special))
    if "error" in r:
        return r
    ids = list(r["value"])
    rec["ids"] = ids
    r = guarded(lambda: tok.convert_ids_to_tokens(ids))
    rec["tokens"] = r.get("value", r)
    for key, skip in (("decoded_skip_special", True), ("decoded_keep_special", False)):
        r = guarded(lambda: tok.decode(ids, skip_special_tokens=skip))
        rec[key] = r.get("value", r)
    return rec


def run_file(tok, text, add_special):
    r = guarded(lambda: tok.encode(text, add_special_tokens=add_special))
    if "error" in r:
        return r
    enc = r["value"]
    rec = {"ids": list(enc.ids), "tokens": list(enc.tokens)}
    for key, skip in (("decoded_skip_special", True), ("decoded_keep_special", False)):
        r = guarded(lambda: tok.decode(rec["ids"], skip_special_tokens=skip))
        rec[key] = r.get("value", r)
    return rec


def reference_for(folder, model_types_arg):
    folder = Path(folder)
    result = {
        "kind": "tokenizer-reference",
        "name": folder.name,
        "folder": str(folder),
        "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
    }
    ok = True
    try:
        import tokenizers
        result["tokenizers_version"] = tokenizers.__version__
    except Exception as e:
        result["tokenizers_version"] = f"unavailable: {e}"
    try:
        import transformers
        result["transformers_version"] = transformers.__version__
    except Exception as e:
        result["transformers_version"] = f"unavailable: {e}"

    try:
        tk_config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except Exception as e:
        tk_config = {}
        result["tokenizer_config_error"] = f"{type(e).__name__}: {e}"
    result["tokenizer_config"] = {k: v for k, v in tk_config.items() if k not in ("added_tokens_decoder", "chat_template")}
    tk_class = tk_config.get("tokenizer_class")
    model_types = model_types_arg or MODEL_TYPES_BY_CLASS.get(tk_class or "", ["llama"])
    result["model_types_tried"] = model_types

    file_tok = None
    try:
        from tokenizers import Tokenizer
        file_tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        result["file"] = {"loaded": True, "pipeline": guarded(lambda: pipeline_parts(file_tok)).get("value")}
    except Exception as e:
        ok = False
        result["file"] = {"loaded": False, "error": f"{type(e).__name__}: {e}"}

    tmp_root = tempfile.mkdtemp(prefix="tokref-")
    try:
        try:
            scenarios = load_scenarios(folder, model_types, tmp_root)
        except Exception as e:  # transformers itself missing or broken
            scenarios = []
            result["transformers_error"] = f"{type(e).__name__}: {e}"
        result["loads"] = [rec for _, _, rec in scenarios]
        loaded = [(s, t) for s, t, _ in scenarios if t is not None]
        primary = next((s for s, _ in loaded if s.startswith("auto:") and s != "auto:no-config"), None) \
            or (loaded[0][0] if loaded else None)
        result["primary_scenario"] = primary
        result["class"] = next((rec.get("class") for s, _, rec in scenarios if s == primary), None)
        if not loaded:
            ok = False

        cases = []
        summary = {s: {"ids_differ_from_file": 0, "decode_differs_from_file": 0, "errors": 0} for s, _ in loaded}
        for text in TEXTS:
            for add_special in (True, False):
                case = {"text": text, "add_special_tokens": add_special}
                f = run_file(file_tok, text, add_special) if file_tok is not None else {"error": "file not loaded"}
                case["file"] = f
                case["transformers"] = {}
                for s, tok in loaded:
                    t = run_transformers(tok, text, add_special)
                    case["transformers"][s] = t
                    if "error" in t or "error" in f:
                        summary[s]["errors"] += 1
                        continue
                    if t["ids"] != f["ids"]:
                        summary[s]["ids_differ_from_file"] += 1
                    if t.get("decoded_skip_special") != f.get("decoded_skip_special"):
                        summary[s]["decode_differs_from_file"] += 1
                p = case["transformers"].get(primary, {}) if primary else {}
                case["ids_transformers"] = p.get("ids")
                case["ids_file"] = f.get("ids")
                case["decoded"] = {
                    "transformers": {"skip_special": p.get("decoded_skip_special"), "keep_special": p.get("decoded_keep_special")},
                    "file": {"skip_special": f.get("decoded_skip_special"), "keep_special": f.get("decoded_keep_special")},
                }
                case["differs"] = None not in (p.get("ids"), f.get("ids")) and p.get("ids") != f.get("ids")
                case["scenarios_differing_from_file"] = sorted(
                    s for s, t in case["transformers"].items() if None not in (t.get("ids"), f.get("ids")) and t.get("ids") != f.get("ids"))
                case["scenarios_agree"] = len({json.dumps(t.get("ids")) for t in case["transformers"].values()}) <= 1
                cases.append(case)
        result["summary"] = summary
        result["cases_differing"] = sum(1 for c in cases if c["differs"])
        result["cases"] = cases
    except Exception as e:
        ok = False
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()[-4000:]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    result["ok"] = ok
    return result, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="tokenizer folders (tokenizer.json + tokenizer_config.json)")
    ap.add_argument("--out", required=True, help="output folder; writes <folder name>.json")
    ap.add_argument("--model-types", help="comma-separated model_type values for config.json (default: by tokenizer_class)")
    args = ap.parse_args()
    model_types = [m for m in (args.model_types or "").split(",") if m] or None
    os.makedirs(args.out, exist_ok=True)
    all_ok = True
    for folder in args.folders:
        name = Path(folder).resolve().name
        try:
            result, ok = reference_for(Path(folder).resolve(), model_types)
        except Exception as e:
            result, ok = {"kind": "tokenizer-reference", "name": name, "ok": False,
                          "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}, False
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, ensure_ascii=False, indent=1)
        loads = ", ".join(f"{r['scenario']}={r.get('class', 'ERROR')}" for r in result.get("loads", []))
        print(f"tokenizer_reference: {name}: ok={ok} transformers={result.get('transformers_version')} "
              f"primary={result.get('primary_scenario')} class={result.get('class')} "
              f"differing={result.get('cases_differing')} [{loads}] -> {path}")
        for s, counts in (result.get("summary") or {}).items():
            print(f"  {s}: {counts}")
        all_ok &= ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
