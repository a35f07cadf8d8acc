#!/usr/bin/env python3
"""Tiny random-weight encoders and sequence classifiers in the Hub's layouts, with sentence-transformers' outputs.

The references come from sentence-transformers (SentenceTransformer.encode / forward, CrossEncoder.predict) and
transformers (AutoModelForSequenceClassification).

Usage: python3 tools/reference/make_encoder_fixtures.py --out DIR [--only NAME ...] [--keep-going]

Writes DIR/<name>/ as a complete model directory as the Hub has it, plus reference.json, for each of fixtures():
  * bert-embed-mean (as sentence-transformers/all-MiniLM-L6-v2): BertModel, unprefixed keys (pooler included), a real
    WordPiece tokenizer (vocab.txt + tokenizer.json, lowercasing); modules Transformer, Pooling(mean), Normalize;
  * xlmr-embed-cls (as BAAI/bge-m3): XLMRobertaModel, unprefixed keys, positions offset by padding_idx + 1 = 2, a
    Unigram (SentencePiece) tokenizer with XLM-R's ids (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last); Pooling(cls),
    Normalize;
  * bert-cross-encoder (as cross-encoder/ms-marco-MiniLM-L-6-v2): BertForSequenceClassification, num_labels 1,
    "bert."-prefixed keys plus classifier.*, saved by sentence-transformers' CrossEncoder (whatever files and
    config.json blocks the installed version writes), the WordPiece tokenizer above;
  * xlmr-cross-encoder (as BAAI/bge-reranker-base): XLMRobertaForSequenceClassification, num_labels 1, "roberta."
    keys (no pooler) plus classifier.dense / classifier.out_proj, saved by CrossEncoder, the Unigram tokenizer above;
  * bert-classifier: BertForSequenceClassification with 3 labels (negative / neutral / positive), plain transformers
    layout (what vLLM's /classify serves), the WordPiece tokenizer;
  * qwen3-seq-cls: Qwen3ForSequenceClassification (make_pooling_fixtures.py's Qwen3 sizes), 2 labels, "model." keys
    plus score.weight, pad_token_id 0; no tokenizer (the references are token ids);
  * bert-embed-dense: bert-embed-mean with a sentence-transformers Dense module (128 -> 96, tanh, seeded) between its
    Pooling and Normalize modules, as LaBSE ships one (reference.json's "dense" names it);
  * gemma3-embed-bidirectional (as google/embeddinggemma-300m): Gemma3TextModel with use_bidirectional_attention,
    unprefixed keys (embed_tokens., layers., norm.), two sliding layers and a full one, per-layer-type RoPE
    (rope_parameters), sliding_window 32 in config.json; modules Transformer, Pooling(mean), Dense(128 -> 256),
    Dense(256 -> 128) (no bias, identity activation, seeded), Normalize, EmbeddingGemma's query / document prompts
    (no default); no tokenizer (the references are token ids).
The tokenizer files stay in the folders (Celer has WordPiece and Unigram tokenizers: the tests tokenize the texts
themselves and compare ids); the two tokenizers are built once per run and copied into every fixture that uses them.

The Unigram tokenizer: when `import sentencepiece` works, a unigram SentencePiece model is trained on a generated
corpus (the ids laid out as XLM-R's sentencepiece.bpe.model has them: <unk> 0, <s> 1, </s> 2, no pad; transformers'
XLM-R conversion then drops those three pieces, puts <s> <pad> </s> <unk> at 0..3, shifts the rest by one and appends
<mask>), and the XLM-R tokenizer class loads it. Otherwise (or when that fails its checks) the vocabulary is made by
hand (words, suffixes, characters, made-up log-probabilities) and built with the tokenizers library as XLM-R's
tokenizer.json has it. The run prints which path was taken; reference.json records it.

How the references are computed (Celer must match this, not "the model"):
  * weights are random (make_model_fixtures.fill_weights with the fixture's seed; the matrices that feed a tanh, the
    BERT pooler's and the XLM-R classification head's dense, are scaled by TANH_INPUT_SCALE so the tanh does not
    saturate), stored in bf16 and loaded back as float32, eager attention, TF32 off;
  * every case is a batch of one sequence with an attention mask of ones (no padding);
  * embedders: "cases" are token ids ([CLS]/<s>/<bos>, random non-special ids, [SEP]/</s>/<eos>) through
    SentenceTransformer.forward; "text_cases" are texts through SentenceTransformer.encode (its own tokenization);
  * gemma3-embed-bidirectional: transformers turns a bidirectional Gemma 3's sliding_window into window // 2 + 1
    each time it builds the config (32 -> 17: a sliding layer's token sees the keys less than 17 positions away on
    either side, a full layer every key), so config.json must keep the fixture's 32 (a re-saved config carries 17,
    halved again on load) and both loaded models must say 17: the run checks both, and reference.json records them
    as sliding_window_file / sliding_window_effective. The 150-token case is also run through a causal copy of the
    model and the 40-token one with a window over every position; both must change the embedding (by more than
    1e-3 and 1e-4), so neither the bidirectional mask nor the window goes untested. Only "cases", no "text_cases":
    the WordLevel tokenizer is saved for sentence-transformers' loader and removed from the fixture at the end;
  * cross-encoders: the pair through CrossEncoder.predict ("score", its default activation: sigmoid for one label)
    and the raw logit from the model it loaded; the pair's ids are the tokenizer's tokenizer(query, document);
  * classifiers: AutoModelForSequenceClassification's logits (and softmax probabilities for bert-classifier);
  * every loaded model is compared with the file (a key the loader ignored leaves a random parameter behind), and
    every output is cross-checked against a second path (AutoModel's last_hidden_state pooled by hand, a separately
    loaded AutoModelForSequenceClassification, the classification head applied by hand);
  * for texts, "tokenizer_json_token_ids" is what tokenizer.json alone gives (tokenizers.Tokenizer.from_file): the
    transformers tokenizer classes may rebuild parts of the pipeline (XLM-R's does), so the two are both recorded and
    a difference is printed as a WARNING.

Seen with sentence-transformers 6.0.1, transformers 5.17.0, tokenizers 0.23.2, sentencepiece 0.2.2 (an H200 run):
all six build and pass their checks, the same bytes with --only; the sentencepiece path is taken (the hand-made one
also passes, tried with sentencepiece blocked); BertTokenizer(vocab=dict) is the WordPiece constructor that works
(transformers 5 ignores a vocab_file given to the constructor and writes no vocab.txt, so this script writes it);
XLMRobertaTokenizer saves tokenizer.json with a Precompiled normalizer, WhitespaceSplit + Metaspace and the
"<s> A </s></s> B </s>" pair template; CrossEncoder.save writes modules.json, sentence_bert_config.json and
config_sentence_transformers.json ("activation_fn": torch.nn.modules.activation.Sigmoid), nothing extra in
config.json; transformers' ids equal tokenizer.json's for every text and pair.
"""

import atexit
import functools
import inspect
import json
import math
import os
import random
import shutil
import string
import sys
import tempfile

# Nothing can be downloaded where this runs: fail at once instead of retrying the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import tokenizers  # noqa: E402
import sentence_transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from sentence_transformers import CrossEncoder, SentenceTransformer  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors  # noqa: E402

try:  # sentence-transformers 6; 5.x and older only have the (now deprecated) models alias
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer  # noqa: E402
except ImportError:
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as base  # noqa: E402
import make_pooling_fixtures as pool  # noqa: E402

DTYPE_KWARG = pool.DTYPE_KWARG
CROSS_CHECK_TOLERANCE = 1e-5  # the same fp32 computation on two paths; only summation order may differ
ENCODER_HIDDEN = 128
ENCODER_SIZES = {"hidden_size": ENCODER_HIDDEN, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 256}
TANH_INPUT_SCALE = 0.25  # pre-tanh std ~0.6 instead of ~2.3 with fill_weights' 0.2
MODEL_MAX_LENGTH = 512
BERT_MAX_SEQ_LENGTH = 256  # all-MiniLM-L6-v2's sentence_bert_config.json
XLMR_MAX_SEQ_LENGTH = 512  # bge-m3 has 8192; this model's positions stop at 514 - 2
EMBED_LENGTHS = (3, 8, 40, 150)  # total ids, [CLS] and [SEP] included
QWEN_LENGTHS = (1, 5, 40, 150)
GEMMA_BOS, GEMMA_EOS = 2, 1  # EmbeddingGemma's tokenizer frames every text as <bos> ... <eos> (<pad> is 0)
GEMMA_SLIDING_WINDOW = 32  # config.json's value; a bidirectional Gemma 3 config turns it into 32 // 2 + 1 = 17
GEMMA_EFFECTIVE_WINDOW = GEMMA_SLIDING_WINDOW // 2 + 1  # a sliding layer's token sees keys less than 17 away
GEMMA_LAYER_TYPES = ["sliding_attention", "sliding_attention", "full_attention"]
GEMMA_DENSE_HIDDEN = 256  # EmbeddingGemma's Dense modules: 768 -> 3072 -> 768; here 128 -> 256 -> 128
GEMMA_MAX_SEQ_LENGTH = 256
EMBEDDINGGEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: "}
IDENTITY = "torch.nn.modules.linear.Identity"  # what sentence-transformers writes for activation_function=nn.Identity()
CAUSAL_CHECK_LENGTH = 150  # the case run again through a causal copy of gemma3-embed-bidirectional
WINDOW_CHECK_LENGTH = 40  # the case run again with a window over every position
UNIGRAM_TARGET_VOCAB = 400
SIGNIFICANT_DIGITS = 8

# WordPiece specials in the order the brief fixes (not bert-base's [unused] layout).
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_PAD, BERT_UNK, BERT_CLS, BERT_SEP, BERT_MASK = range(5)
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3; <mask> is the last id
XLMR_BOS, XLMR_PAD, XLMR_EOS, XLMR_UNK = range(4)

# The words of TEXTS / PAIRS / CLASSIFIER_TEXTS first, then common English words: WORD_COUNT in all, which keeps the
# WordPiece vocabulary (~120 specials, characters and suffixes besides) under 512 entries.
TEXT_WORDS = """
the quick brown fox jump over lazy dog hello world this is test of mixed case it cafe au lait price rose by in they
were walk and play hard game far away what capital france paris large city how many people live berlin had
population who wrote book was written young woman from small town near sea best coffee drink made with hot milk hi
love movie great worst thing ever weather okay today number like are fine
""".split()
WORD_COUNT = 360
COMMON_WORDS = """
the of and to in is it you that he was for on are with as his they be at one have this from or had by hot word but
what some we can out other were all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two has look more day could go come did
number sound no most people my over know water than call first who may down side been now find any new work part
take get place made live where after back little only round man year came show every good me give our under name
very through just form sentence great think say help low line turn cause much mean before move right boy old too
same tell does set three want air well also play small end put home read hand large add even land here must big
high such follow act why ask men change went light kind off need house picture try us again animal point mother
world near build self earth father head stand own page should country found answer school grow study still learn
plant cover food sun four between state keep eye never last let thought city tree cross farm hard start might story
saw far sea draw left late run while press close night real life few north open seem together next white children
begin got walk example paper group always music those both mark often letter until mile river car feet care second
book carry took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color
face wood main enough girl young ready above ever red list though feel talk bird soon body dog family leave song
door black short class wind question happen complete ship area half rock order fire south problem piece told knew
pass since top whole king space heard best hour better true during hundred five remember step early hold west
ground reach fast sing listen six table travel less morning ten simple toward war lay against slow center love
person money serve road map rain rule pull cold voice town fine fly fall lead dark machine wait plan star box field
rest able done drive stood front teach week final gave green quick ocean warm free minute strong mind clear fact
street nothing course stay full blue deep moon island foot busy test boat gold dry laugh game bring yes east
language among
""".split()
WORDS = list(dict.fromkeys(TEXT_WORDS + COMMON_WORDS))[:WORD_COUNT]
WORDPIECE_SUFFIXES = ["s", "es", "ed", "ing", "ly", "er", "est", "ion", "tion", "ness", "ment", "able", "ful", "y"]
UNIGRAM_SUFFIXES = ["s", "es", "ed", "ing", "ly", "er", "est", "tion", "ness", "ment"]
CAPITALIZED = ["The", "This", "They", "Hello", "World", "Paris", "Berlin", "France", "Who", "What", "How", "Numbers"]
ACCENTED = list("éèêàâçüöäñßíóáôû")
MULTILINGUAL_WORDS = ["café", "crème", "naïve", "über", "straße", "niño", "año", "garçon", "élève", "größe", "déjà",
                      "façade", "señor", "mañana", "für", "schön", "très", "où", "à", "être", "Café", "Über", "Straße"]

# Texts for the embedders' text cases: plain words, subword splits, mixed case and punctuation, an accent, digits,
# two spaces, characters outside both vocabularies ([UNK] / <unk>), and a long text added per fixture (~100 tokens).
# No tabs, newlines, leading or trailing spaces: transformers' XLM-R class rebuilds the pre-tokenizer (WhitespaceSplit
# + Metaspace) and only agrees with XLM-R's tokenizer.json (Metaspace alone) on single interior spaces or runs of them.
TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "Hello, World! This is a TEST of Mixed Case; isn't it?",
    "Café prices rose by 15.5% in 2024",
    "They were  walking quickly and played the hardest games",
    "日本 is far away",
]
PAIRS = [
    ("what is the capital of france?", "Paris is the capital and the largest city of France."),
    ("how many people live in berlin", "Berlin had a population of 3,520,031 people in 2019."),
    ("Who wrote the book?", "The book was written by a young woman from a small town near the sea."),
    ("best coffee", "Café  au lait is a coffee drink made with hot milk."),
    ("hi", "hello"),
]
CLASSIFIER_TEXTS = [
    "I love this movie, it was great!",
    "This is the worst thing ever.",
    "The weather is okay today",
    "Numbers like 42 and 3.14 are fine",
]


# ---------------------------------------------------------------------------------------------------------------
# Small helpers


def rounded(values):
    """Floats to SIGNIFICANT_DIGITS significant digits (fp32 carries ~7.2), keeping the JSON small."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().tolist()
    if isinstance(values, (list, tuple)):
        return [rounded(v) for v in values]
    value = float(values)
    if not math.isfinite(value):
        raise RuntimeError(f"non-finite value {value} in a reference")
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def fullname(obj):
    """The dotted class path sentence-transformers writes for an activation (torch.nn.modules.activation.Sigmoid)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def transformers_class(*names):
    """The first of the named transformers classes that exists (the *Fast names are aliases, or gone, in 5.x)."""
    for name in names:
        try:
            cls = getattr(transformers, name)
        except Exception:  # noqa: BLE001 - the lazy module raises ImportError/AttributeError/RuntimeError
            continue
        if cls is not None:
            return cls
    raise RuntimeError(f"transformers has none of {names}")


def init_parameters(callable_):
    """(named parameters, accepts **kwargs) of a constructor or function."""
    try:
        params = inspect.signature(callable_).parameters
    except (TypeError, ValueError):
        return set(), True
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return set(params), var_kw


def model_files(model_dir):
    return sorted(os.path.relpath(os.path.join(root, f), model_dir) for root, _, fs in os.walk(model_dir) for f in fs)


def copy_tree_files(src, dst, overwrite=True):
    """Copy every file under src into dst (same relative paths)."""
    for rel in model_files(src):
        target = os.path.join(dst, rel)
        if os.path.exists(target) and not overwrite:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(os.path.join(src, rel), target)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def safetensors_keys(model_dir):
    with safe_open(os.path.join(model_dir, "model.safetensors"), framework="pt") as f:
        return list(f.keys())


def compare_weight_files(expected_path, actual_path):
    """(missing, extra, differing) tensor names of actual against expected."""
    expected, actual = load_file(expected_path), load_file(actual_path)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differing = sorted(k for k in set(expected) & set(actual)
                       if expected[k].dtype != actual[k].dtype or not torch.equal(expected[k], actual[k]))
    return missing, extra, differing


def check_key_layout(model_dir, name, allowed_prefixes, required, forbidden_prefixes=()):
    keys = safetensors_keys(model_dir)
    wrong = [k for k in keys if not any(k.startswith(p) for p in allowed_prefixes)
             or any(k.startswith(p) for p in forbidden_prefixes)]
    if wrong:
        raise RuntimeError(f"{name}: unexpected tensor names {wrong[:4]} (allowed prefixes {allowed_prefixes}, "
                           f"forbidden {forbidden_prefixes})")
    absent = [k for k in required if k not in keys]
    if absent:
        raise RuntimeError(f"{name}: tensors {absent} missing from the file")
    return len(keys)


def check_close(name, what, got, want, tolerance=CROSS_CHECK_TOLERANCE, relative=False):
    got = torch.as_tensor(got, dtype=torch.float32).flatten()
    want = torch.as_tensor(want, dtype=torch.float32).flatten()
    if got.shape != want.shape:
        raise RuntimeError(f"{name}: {what}: shapes {tuple(got.shape)} and {tuple(want.shape)} differ")
    if not torch.isfinite(got).all() or not torch.isfinite(want).all():
        raise RuntimeError(f"{name}: {what}: non-finite values")
    diff = float((got - want).abs().max()) if got.numel() else 0.0
    limit = tolerance * (max(1.0, float(want.abs().max())) if relative and want.numel() else 1.0)
    if diff > limit:
        raise RuntimeError(f"{name}: {what}: the two paths differ by {diff:.3e} (limit {limit:.1e})")
    return diff


def seed_of(index):
    return 1000 + 100 * index


def long_text(rng, words=70):
    """~100 tokens of vocabulary words, some with suffixes (subword splits), capitals and punctuation."""
    out = []
    for i in range(words):
        word = rng.choice(WORDS)
        if rng.random() < 0.15:
            word += rng.choice(["s", "ing", "ed", "ly"])
        if i == 0 or out[-1].endswith("."):
            word = word.capitalize()
        if i < words - 1 and rng.random() < 0.08:
            word += rng.choice([",", ".", ";"])
        out.append(word)
    return " ".join(out) + "."


def reference_header(name, config_dict, seed, **extra):
    return {"model": name, "architecture": config_dict["architectures"][0], **extra,
            "transformers_version": transformers.__version__,
            "sentence_transformers_version": sentence_transformers.__version__,
            "torch_version": torch.__version__, "tokenizers_version": tokenizers.__version__,
            "dtype": "float32", "storage_dtype": "bfloat16", "weight_seed": seed}


# ---------------------------------------------------------------------------------------------------------------
# Configs and weights


def bert_config(architecture, vocab_size, **extra):
    return {"architectures": [architecture], "model_type": "bert", "vocab_size": vocab_size, **ENCODER_SIZES,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
            "layer_norm_eps": 1e-12, "pad_token_id": BERT_PAD, "position_embedding_type": "absolute",
            "use_cache": True, "classifier_dropout": None,
            **extra, "dtype": "bfloat16", "transformers_version": transformers.__version__}


def xlmr_config(architecture, vocab_size, **extra):
    return {"architectures": [architecture], "model_type": "xlm-roberta", "vocab_size": vocab_size, **ENCODER_SIZES,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 514, "type_vocab_size": 1, "initializer_range": 0.02,
            "layer_norm_eps": 1e-5, "pad_token_id": XLMR_PAD, "bos_token_id": XLMR_BOS, "eos_token_id": XLMR_EOS,
            "position_embedding_type": "absolute", "use_cache": True, "classifier_dropout": None,
            **extra, "dtype": "bfloat16", "transformers_version": transformers.__version__}


def labels(names):
    return {"id2label": {str(i): n for i, n in enumerate(names)}, "label2id": {n: i for i, n in enumerate(names)}}


def tame_tanh_inputs(model):
    """Scale the matrices whose output goes through a tanh (BERT's pooler, RoBERTa's classification head)."""
    scaled = []
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("pooler.dense.weight") or name == "classifier.dense.weight":
                param.mul_(TANH_INPUT_SCALE)
                scaled.append(name)
    return scaled


def stage_model(directory, config_dict, auto_class, seed):
    """Random weights for config_dict's architecture saved (bf16) into directory, with config_dict as config.json.
    Returns the path of the weights file."""
    config_path = os.path.join(directory, "config.json")
    base.write_json(config_path, config_dict)
    config = transformers.AutoConfig.from_pretrained(directory)
    torch.manual_seed(seed)
    model = auto_class.from_config(config).to(torch.float32)
    base.fill_weights(model, seed)
    scaled = tame_tanh_inputs(model)
    model.to(torch.bfloat16)
    model.save_pretrained(directory)
    # save_pretrained writes the class's own, fuller config; the file under test is the fixture's.
    base.write_json(config_path, config_dict)
    print(f"  staged {type(model).__name__}: {sum(p.numel() for p in model.parameters())} parameters, seed {seed}"
          f"{', tanh inputs scaled: ' + ' '.join(scaled) if scaled else ''}", flush=True)
    return os.path.join(directory, "model.safetensors")


def load_hand_model(model_dir, auto_class, device):
    return auto_class.from_pretrained(model_dir, attn_implementation="eager",
                                      **{DTYPE_KWARG: torch.float32}).to(device).eval()


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers (built once per run, copied into each fixture)

_TOKENIZERS = {}


def _temp_dir(prefix):
    path = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, path, True)
    return path


def shared_tokenizer(kind):
    """(directory with the saved tokenizer files, info dict) for "wordpiece" or "unigram"."""
    if kind not in _TOKENIZERS:
        print(f"  building the {kind} tokenizer", flush=True)
        _TOKENIZERS[kind] = {"wordpiece": build_wordpiece, "unigram": build_unigram}[kind]()
    return _TOKENIZERS[kind]


def encoded_ids(tok, text, pair=None):
    enc = tok(text, pair) if pair is not None else tok(text)
    type_ids = enc.get("token_type_ids")
    return list(enc["input_ids"]), (list(type_ids) if type_ids is not None else None)


def compare_with_manual(tok, manual, with_type_ids):
    """None when tok (a transformers tokenizer) gives manual's (a tokenizers.Tokenizer) ids for every text and pair,
    else the first difference."""
    for text in TEXTS + CLASSIFIER_TEXTS:
        ids, _ = encoded_ids(tok, text)
        want = manual.encode(text).ids
        if ids != want:
            return f"{text!r}: {ids} != {want}"
    for query, document in PAIRS:
        ids, type_ids = encoded_ids(tok, query, document)
        want = manual.encode(query, document)
        if ids != want.ids:
            return f"({query!r}, {document!r}): {ids} != {want.ids}"
        if with_type_ids and type_ids != want.type_ids:
            return f"({query!r}, {document!r}): token_type_ids {type_ids} != {want.type_ids}"
    return None


def scrub_tokenizer_config(directory, **overrides):
    """Drop absolute temporary paths transformers may have recorded, and apply overrides."""
    path = os.path.join(directory, "tokenizer_config.json")
    if not os.path.exists(path):
        base.write_json(path, dict(overrides))
        return
    cfg = read_json(path)
    tmp = tempfile.gettempdir()
    for key in [k for k, v in cfg.items() if isinstance(v, str) and os.path.isabs(v) and v.startswith(tmp)]:
        del cfg[key]
    for key in ("vocab", "merges"):  # a vocabulary passed to the constructor belongs in tokenizer.json only
        if key in cfg and not isinstance(cfg[key], str):
            del cfg[key]
    for key in ("is_local", "local_files_only"):  # from_pretrained's own arguments, kept by transformers 5
        cfg.pop(key, None)
    if "unk_id" in cfg and cfg.get("unk_token") == "<unk>":
        del cfg["unk_id"]  # SentencePiece's <unk> id (0) kept from the .model file: tokenizer.json has XLM-R's (3)
    cfg.update(overrides)
    base.write_json(path, cfg)


def wordpiece_vocab():
    tokens = list(BERT_SPECIALS) + list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)
    tokens += ["##" + c for c in string.ascii_lowercase] + ["##" + c for c in string.digits]
    tokens += ["##" + s for s in WORDPIECE_SUFFIXES] + WORDS
    vocab = list(dict.fromkeys(tokens))  # first occurrence wins
    if len(vocab) > base.VOCAB:
        raise RuntimeError(f"WordPiece vocabulary has {len(vocab)} entries, more than {base.VOCAB}")
    return vocab


def manual_wordpiece(vocab):
    """BERT's pipeline (what BertTokenizerFast builds) straight from the tokenizers library: the expected ids."""
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                                lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", BERT_CLS), ("[SEP]", BERT_SEP)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(list(BERT_SPECIALS))  # in the vocabulary already: they keep their ids
    return tok


def build_wordpiece():
    """vocab.txt plus transformers' BertTokenizerFast over it, saved as the Hub has it (tokenizer.json,
    tokenizer_config.json, vocab.txt, ...). Tries the constructors of transformers 4 and 5 in turn and keeps the
    first whose ids equal BERT's pipeline built by hand."""
    vocab = wordpiece_vocab()
    vocab_dir = _temp_dir("wordpiece-vocab-")
    vocab_path = os.path.join(vocab_dir, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t in vocab))
    base.write_json(os.path.join(vocab_dir, "tokenizer_config.json"), {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": MODEL_MAX_LENGTH})
    manual = manual_wordpiece(vocab)
    cls = transformers_class("BertTokenizerFast", "BertTokenizer")
    params, _ = init_parameters(cls.__init__)
    common = {"do_lower_case": True, "model_max_length": MODEL_MAX_LENGTH}
    vocab_ids = {t: i for i, t in enumerate(vocab)}
    candidates = []
    if "vocab" in params:  # transformers 5: BertTokenizer(vocab=dict); a vocab_file alone gives a 5-token vocabulary
        candidates.append((f"{cls.__name__}(vocab=dict)", lambda: cls(vocab=dict(vocab_ids), **common)))
    candidates.append((f"{cls.__name__}(vocab_file=vocab.txt)", lambda: cls(vocab_file=vocab_path, **common)))
    candidates.append((f"{cls.__name__}.from_pretrained(vocab.txt folder)",
                       lambda: cls.from_pretrained(vocab_dir, **common)))
    candidates.append((f"{cls.__name__}(tokenizer_object=...)",
                       lambda: cls(tokenizer_object=manual_wordpiece(vocab), **common)))
    problems = []
    for label, make in candidates:
        out_dir = _temp_dir("wordpiece-")
        try:
            tok = make()
            got = {t: tok.convert_tokens_to_ids(t) for t in vocab}
            if got != vocab_ids or len(tok) != len(vocab):
                raise RuntimeError(f"vocabulary differs (len {len(tok)}, want {len(vocab)})")
            problem = compare_with_manual(tok, manual, True)
            if problem:
                raise RuntimeError(f"ids differ from BERT's pipeline: {problem}")
            tok.save_pretrained(out_dir)
            finish_wordpiece_dir(out_dir, vocab)
            reloaded = transformers.AutoTokenizer.from_pretrained(out_dir)
            problem = compare_with_manual(reloaded, manual, True)
            if problem:
                raise RuntimeError(f"reloaded ({type(reloaded).__name__}) ids differ: {problem}")
        except Exception as e:  # noqa: BLE001 - try the next way of building it
            problems.append(f"{label}: {type(e).__name__}: {e}")
            print(f"  wordpiece: {label} rejected: {type(e).__name__}: {e}", flush=True)
            continue
        print(f"  wordpiece: {len(vocab)} entries, built with {label}; files {' '.join(model_files(out_dir))}",
              flush=True)
        return out_dir, {"tokenizer": "WordPiece", "tokenizer_source": label, "vocab_size": len(vocab),
                         "tokenizer_class": type(reloaded).__name__}
    raise RuntimeError("no way of building the WordPiece tokenizer passed its checks: " + " | ".join(problems))


def finish_wordpiece_dir(directory, vocab):
    """vocab.txt as the Hub has it (transformers 5 writes only tokenizer.json), tokenizer_config.json without
    temporary paths and with model_max_length."""
    path = os.path.join(directory, "vocab.txt")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = f.read().split("\n")
        if [t for t in saved if t] != vocab:
            raise RuntimeError("the vocab.txt transformers saved is not the vocabulary")
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(t + "\n" for t in vocab))
    scrub_tokenizer_config(directory, model_max_length=MODEL_MAX_LENGTH)


def unigram_pieces():
    """A hand-made XLM-R-like Unigram vocabulary: specials, "▁word" pieces, suffixes, single characters, <mask> last.
    Scores are made-up log-probabilities, all distinct, whole words far likelier than their spellings."""
    pieces = [(t, 0.0) for t in XLMR_SPECIALS]
    seen = set(XLMR_SPECIALS)

    def add(group, base_score):
        for k, piece in enumerate(group):
            if piece not in seen:
                seen.add(piece)
                pieces.append((piece, round(base_score - 0.0013 * k, 4)))

    add(["▁"], -4.0)
    add(["▁" + w for w in WORDS], -5.0)
    add(["▁" + w for w in CAPITALIZED], -6.5)
    add(UNIGRAM_SUFFIXES, -7.5)
    add(list(string.ascii_lowercase), -9.0)
    add(list(string.punctuation), -9.2)
    add(list(string.digits), -9.4)
    add(list(string.ascii_uppercase), -10.0)
    add(ACCENTED, -10.5)
    pieces.append(("<mask>", 0.0))
    return pieces


def _metaspace(cls):
    try:
        return cls(replacement="▁", prepend_scheme="always")
    except TypeError:  # tokenizers before 0.15
        return cls(replacement="▁", add_prefix_space=True)


def manual_unigram(pieces):
    """XLM-R's tokenizer.json pipeline (as transformers' XLMRobertaConverter writes it, minus the Precompiled
    charsmap) from the tokenizers library."""
    tok = Tokenizer(models.Unigram(pieces, unk_id=XLMR_UNK, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = _metaspace(pre_tokenizers.Metaspace)
    tok.decoder = _metaspace(decoders.Metaspace)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", XLMR_BOS), ("</s>", XLMR_EOS)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in XLMR_SPECIALS + ["<mask>"]])
    return tok


def check_xlmr_specials(tok):
    """Raise unless tok has XLM-R's special ids."""
    ids = tok.convert_tokens_to_ids(XLMR_SPECIALS + ["<mask>"])
    if ids[:4] != [XLMR_BOS, XLMR_PAD, XLMR_EOS, XLMR_UNK] or ids[4] != len(tok) - 1:
        raise RuntimeError(f"special ids {dict(zip(XLMR_SPECIALS + ['<mask>'], ids))}, vocabulary {len(tok)}")
    named = (tok.cls_token_id, tok.pad_token_id, tok.sep_token_id, tok.unk_token_id, tok.mask_token_id)
    if named != (XLMR_BOS, XLMR_PAD, XLMR_EOS, XLMR_UNK, len(tok) - 1):
        raise RuntimeError(f"cls/pad/sep/unk/mask ids {named}")
    ids, _ = encoded_ids(tok, "hello world")
    if ids[0] != XLMR_BOS or ids[-1] != XLMR_EOS or XLMR_UNK in ids:
        raise RuntimeError(f"'hello world' gives {ids}")
    ids, _ = encoded_ids(tok, "hello", "world")
    if ids[0] != XLMR_BOS or ids[-1] != XLMR_EOS:
        raise RuntimeError(f"('hello', 'world') gives {ids}")
    if ids.count(XLMR_EOS) != 3:
        print(f"  WARNING: {type(tok).__name__} frames a pair as {ids}, not <s> A </s></s> B </s> (XLM-R's)",
              flush=True)


def training_corpus(path, rng):
    """Generated English text with some accented / multilingual words, every ASCII punctuation mark and digit."""
    lines = []
    zipf = [1.0 / (rank + 1) for rank in range(len(COMMON_WORDS))]  # common words become whole pieces, rare ones split
    for _ in range(3000):
        words = []
        for i in range(rng.randint(4, 14)):
            r = rng.random()
            if r < 0.05:
                word = rng.choice(MULTILINGUAL_WORDS)
            elif r < 0.25:
                word = rng.choice(WORDS)
            else:
                word = rng.choices(COMMON_WORDS, weights=zipf)[0]
            if rng.random() < 0.15:
                word += rng.choice(UNIGRAM_SUFFIXES)
            if i == 0 and rng.random() < 0.5:
                word = word.capitalize()
            if rng.random() < 0.05:
                word = str(rng.randint(0, 99999))
            if rng.random() < 0.1:
                word += rng.choice(string.punctuation)
            words.append(word)
        lines.append(" ".join(words))
    lines += [" ".join(string.punctuation)] * 20 + [" ".join(string.digits)] * 20
    lines += [" ".join(ACCENTED + list(string.ascii_uppercase))] * 20
    rng.shuffle(lines)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def unigram_from_sentencepiece(work):
    """Train a unigram SentencePiece model laid out as XLM-R's sentencepiece.bpe.model (<unk> 0, <s> 1, </s> 2, no
    pad) and load it with transformers' XLM-R tokenizer class (which converts it to XLM-R's ids)."""
    import sentencepiece as spm  # noqa: F401 - ImportError selects the tokenizers-library path

    corpus = os.path.join(work, "corpus.txt")
    training_corpus(corpus, random.Random(7091))
    prefix = os.path.join(work, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=UNIGRAM_TARGET_VOCAB, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1)
    model_dir = os.path.join(work, "spm-model")
    os.makedirs(model_dir)
    shutil.copy(prefix + ".model", os.path.join(model_dir, "sentencepiece.bpe.model"))
    base.write_json(os.path.join(model_dir, "tokenizer_config.json"), {
        "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": MODEL_MAX_LENGTH})
    cls = transformers_class("XLMRobertaTokenizerFast", "XLMRobertaTokenizer")
    tok = cls.from_pretrained(model_dir, model_max_length=MODEL_MAX_LENGTH)
    return tok, f"sentencepiece {getattr(spm, '__version__', '?')} unigram model, {cls.__name__}.from_pretrained"


def unigram_from_tokenizers_library():
    pieces = unigram_pieces()
    manual = manual_unigram(pieces)
    tok = transformers_class("PreTrainedTokenizerFast", "TokenizersBackend")(
        tokenizer_object=manual, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        cls_token="<s>", sep_token="</s>", mask_token="<mask>", model_max_length=MODEL_MAX_LENGTH)
    problem = compare_with_manual(tok, manual, False)
    if problem:
        raise RuntimeError(f"PreTrainedTokenizerFast over the hand-built tokenizer differs from it: {problem}")
    return tok, "tokenizers library, hand-made vocabulary"


def build_unigram():
    """XLM-R's tokenizer files (tokenizer.json, tokenizer_config.json naming XLMRobertaTokenizer as the Hub's do,
    sentencepiece.bpe.model when trained with sentencepiece)."""
    work = _temp_dir("unigram-work-")
    makers = [("sentencepiece", lambda: unigram_from_sentencepiece(work)),
              ("tokenizers", unigram_from_tokenizers_library)]
    problems = []
    for path_name, make in makers:
        out_dir = _temp_dir("unigram-")
        try:
            tok, source = make()
            check_xlmr_specials(tok)
            tok.save_pretrained(out_dir)
            # The Hub's XLM-R checkpoints name the model's class (transformers 5 then rebuilds the pre-tokenizer and
            # post-processor from its own code: the tests see both, see "tokenizer_json_token_ids").
            scrub_tokenizer_config(out_dir, tokenizer_class="XLMRobertaTokenizer", model_max_length=MODEL_MAX_LENGTH)
            reloaded = transformers.AutoTokenizer.from_pretrained(out_dir)
            check_xlmr_specials(reloaded)
            if len(reloaded) != len(tok):
                raise RuntimeError(f"reloaded vocabulary {len(reloaded)} != {len(tok)}")
            file_tok = Tokenizer.from_file(os.path.join(out_dir, "tokenizer.json"))
            disagree = [t for t in TEXTS + CLASSIFIER_TEXTS if encoded_ids(reloaded, t)[0] != file_tok.encode(t).ids]
            disagree += [f"{q} | {d}" for q, d in PAIRS if encoded_ids(reloaded, q, d)[0] != file_tok.encode(q, d).ids]
        except ImportError as e:
            problems.append(f"{path_name}: {e}")
            print(f"  unigram: {path_name} path unavailable: {e}", flush=True)
            continue
        except Exception as e:  # noqa: BLE001 - take the next path
            problems.append(f"{path_name}: {type(e).__name__}: {e}")
            print(f"  unigram: {path_name} path rejected: {type(e).__name__}: {e}", flush=True)
            continue
        for text in disagree:
            print(f"  WARNING: unigram: {type(reloaded).__name__} and tokenizer.json disagree on {text!r}", flush=True)
        print(f"  unigram: path taken: {path_name} ({source}); {len(reloaded)} ids, reloaded as "
              f"{type(reloaded).__name__}; files {' '.join(model_files(out_dir))}", flush=True)
        return out_dir, {"tokenizer": "Unigram", "tokenizer_source": source, "vocab_size": len(reloaded),
                         "tokenizer_class": type(reloaded).__name__}
    raise RuntimeError("no way of building the Unigram tokenizer passed its checks: " + " | ".join(problems))


def tokenizer_json(model_dir):
    return Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))


def warn_if_file_differs(name, what, ids, file_ids):
    if ids != file_ids:
        print(f"  WARNING: {name}: {what}: transformers gives {ids}, tokenizer.json alone {file_ids}", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# sentence-transformers


DENSE_OUT = 96  # bert-embed-dense's projection: 128 -> 96 with tanh, as LaBSE's Dense (768 -> 768, tanh)


def save_sentence_transformer(staging, model_dir, pooling, normalize, dense_layers=(), dense_seed=None, prompts=None):
    """SentenceTransformer.save over the staged checkpoint: modules.json, the module folders and the
    sentence-transformers config files exactly as the installed version writes them; a Dense module (random, seeded
    with dense_seed) for each (in_features, out_features, bias, activation) of dense_layers, in order, between the
    Pooling and the Normalize module; prompts as config_sentence_transformers.json carries them."""
    modules = [Transformer(staging, model_kwargs={DTYPE_KWARG: torch.bfloat16}),
               Pooling(ENCODER_HIDDEN, pooling_mode=pooling)]
    if dense_layers:
        torch.manual_seed(dense_seed)
        modules += [Dense(in_features, out_features, bias=bias, activation_function=activation)
                    for in_features, out_features, bias, activation in dense_layers]
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", prompts=prompts, similarity_fn_name="cosine")
    st.save(model_dir, create_model_card=False)


def finish_embedder_layout(model_dir, pooling, max_seq_length):
    """sentence_bert_config.json's max_seq_length and 1_Pooling/config.json in the pooling_mode_* form the Hub's
    all-MiniLM-L6-v2 and bge-m3 carry."""
    path = os.path.join(model_dir, "sentence_bert_config.json")
    bert_config_ = read_json(path) if os.path.exists(path) else {}
    base.write_json(path, {**bert_config_, "max_seq_length": max_seq_length, "do_lower_case": False})
    base.write_json(os.path.join(model_dir, "1_Pooling", "config.json"), {
        "word_embedding_dimension": ENCODER_HIDDEN,
        **{key: mode == pooling for mode, key in pool.LEGACY_POOLING_KEYS.items()}, "include_prompt": True})


def st_input_ids(model, inputs):
    """The token ids sentence-transformers feeds the model for inputs (a list of one text or one pair)."""
    if hasattr(model, "preprocess"):
        features = model.preprocess(inputs)
    elif hasattr(model, "tokenize"):
        features = model.tokenize(inputs)
    else:
        return None
    first = features["input_ids"][0]
    return [int(i) for i in (first.tolist() if hasattr(first, "tolist") else first)]


def st_encode(st, text):
    kwargs = {"convert_to_tensor": True, "normalize_embeddings": False, "show_progress_bar": False}
    try:
        out = st.encode([text], **kwargs)
    except TypeError:
        kwargs.pop("normalize_embeddings")
        out = st.encode([text], **kwargs)
    return out[0].float().cpu()


def cross_encoder_kwargs(device, dtype, activation=None):
    """CrossEncoder's keyword arguments under the names the installed version takes (3.x: automodel_args and
    default_activation_function; 4.x and later: model_kwargs and activation_fn)."""
    params, var_kw = init_parameters(CrossEncoder.__init__)
    kwargs = {"device": str(device)}
    if "local_files_only" in params or var_kw:
        kwargs["local_files_only"] = True
    model_kwargs = {DTYPE_KWARG: dtype, "attn_implementation": "eager"}
    if "automodel_args" in params and "model_kwargs" not in params:
        kwargs["automodel_args"] = model_kwargs
    else:
        kwargs["model_kwargs"] = model_kwargs
    if activation is not None:
        if "activation_fn" in params or ("default_activation_function" not in params and var_kw):
            kwargs["activation_fn"] = activation
        elif "default_activation_function" in params:
            kwargs["default_activation_function"] = activation
    return kwargs


def load_cross_encoder(path, device, dtype, activation=None):
    ce = CrossEncoder(path, **cross_encoder_kwargs(device, dtype, activation))
    ce_model(ce).eval()
    return ce


def ce_model(ce):
    model = getattr(ce, "model", None)
    if model is None:
        raise RuntimeError("CrossEncoder has no model attribute")
    return model


def ce_activation(ce):
    for attr in ("activation_fn", "default_activation_function", "activation_fct"):
        act = getattr(ce, attr, None)
        if act is not None:
            return act
    raise RuntimeError("CrossEncoder exposes no activation function")


def saved_activation(model_dir):
    """(activation class path, file) as the saved CrossEncoder records it, or (None, None)."""
    cfg = read_json(os.path.join(model_dir, "config.json"))
    block = cfg.get("sentence_transformers")
    if isinstance(block, dict) and block.get("activation_fn"):
        return block["activation_fn"], "config.json"
    path = os.path.join(model_dir, "config_sentence_transformers.json")
    if os.path.exists(path) and read_json(path).get("activation_fn"):
        return read_json(path)["activation_fn"], "config_sentence_transformers.json"
    if cfg.get("sbert_ce_default_activation_function"):
        return cfg["sbert_ce_default_activation_function"], "config.json"
    return None, None


def save_cross_encoder(ce, model_dir):
    params, _ = init_parameters(ce.save)
    if "create_model_card" in params:
        ce.save(model_dir, create_model_card=False)
    else:
        ce.save(model_dir)
    readme = os.path.join(model_dir, "README.md")
    if os.path.exists(readme):  # a generated model card: nothing a loader reads
        os.remove(readme)


@torch.inference_mode()
def classify(model, ids, type_ids, device):
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    kwargs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    if type_ids is not None:
        kwargs["token_type_ids"] = torch.tensor([type_ids], dtype=torch.long, device=device)
    return model(**kwargs).logits[0].float().cpu()


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


def dense_modules(st):
    """The SentenceTransformer's Dense modules in their order (bert-embed-dense has one, gemma3-embed-bidirectional
    two)."""
    return [m for m in st if type(m).__name__ == "Dense"]


def hand_pool(hand, ids, pooling, denses, device):
    """The hand path of an embedder: AutoModel's hidden states pooled, through each Dense module's own linear layer and
    activation in order, then normalized."""
    hidden, pooled = pool.hand_embed(hand, ids, pooling, False, device)
    with torch.inference_mode():
        for dense in denses:
            pooled = dense.activation_function(dense.linear(pooled.to(device).to(dense.linear.weight.dtype))).float().cpu()
    return hidden, torch.nn.functional.normalize(pooled, dim=-1)


def build_embedder(index, name, kind, out_dir, device, dense=False):
    """bert-embed-mean / xlmr-embed-cls; bert-embed-dense (bert-embed-mean with a Dense module)."""
    bert = kind == "wordpiece"
    pooling = "mean" if bert else "cls"
    max_seq_length = BERT_MAX_SEQ_LENGTH if bert else XLMR_MAX_SEQ_LENGTH
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    seed = seed_of(index)
    tok_dir, tok_info = shared_tokenizer(kind)
    vocab_size = tok_info["vocab_size"]
    config_dict = (bert_config("BertModel", vocab_size) if bert
                   else xlmr_config("XLMRobertaModel", vocab_size))
    with tempfile.TemporaryDirectory() as staging:
        copy_tree_files(tok_dir, staging)
        staged = stage_model(staging, config_dict, transformers.AutoModel, seed)
        dense_layers = [(ENCODER_HIDDEN, DENSE_OUT, True, torch.nn.Tanh())] if dense else []
        save_sentence_transformer(staging, model_dir, pooling, True, dense_layers, dense_seed=seed + 1)
        missing, extra, differing = compare_weight_files(staged, os.path.join(model_dir, "model.safetensors"))
        if missing or extra or differing:
            print(f"  WARNING: {name}: sentence-transformers saved other weights (missing {missing[:3]}, extra "
                  f"{extra[:3]}, differing {differing[:3]}); the staged file replaces them", flush=True)
        shutil.copy(staged, os.path.join(model_dir, "model.safetensors"))
        shutil.copy(os.path.join(staging, "config.json"), os.path.join(model_dir, "config.json"))
    copy_tree_files(tok_dir, model_dir)  # the shared tokenizer's files, over the ones sentence-transformers re-saved
    finish_embedder_layout(model_dir, pooling, max_seq_length)
    base.verify_saved_weights(model_dir, "bfloat16", True)
    foreign = ("bert.", "roberta.", "model.")
    tensor_count = check_key_layout(model_dir, name, ("embeddings.", "encoder.", "pooler."),
                                    ["embeddings.word_embeddings.weight", "pooler.dense.weight"], foreign)

    hand = load_hand_model(model_dir, transformers.AutoModel, device)
    pool.check_loaded_weights(hand, model_dir)
    st = pool.load_sentence_transformer(model_dir, device)
    pool.check_loaded_weights(st[0].auto_model, model_dir)
    file_tok = tokenizer_json(model_dir)
    tokenizer = st.tokenizer
    denses = dense_modules(st)
    if len(denses) != (1 if dense else 0):
        raise RuntimeError(f"{name}: the saved model has {len(denses)} Dense modules, not {1 if dense else 0}")
    if dense and not os.path.exists(os.path.join(model_dir, "2_Dense", "model.safetensors")):
        raise RuntimeError(f"{name}: sentence-transformers saved the Dense module without model.safetensors: "
                           f"{sorted(os.listdir(os.path.join(model_dir, '2_Dense')))}")

    prompt_rng = random.Random(7000 + index)
    first, last = (BERT_CLS, BERT_SEP) if bert else (XLMR_BOS, XLMR_EOS)
    low, high = (len(BERT_SPECIALS), vocab_size) if bert else (XLMR_UNK + 1, vocab_size - 1)  # no specials, no <mask>
    cases, norms = [], []
    for length in EMBED_LENGTHS:
        ids = [first] + [prompt_rng.randrange(low, high) for _ in range(length - 2)] + [last]
        tokens, embedding = pool.st_embed(st, ids, device)
        hidden, by_hand = hand_pool(hand, ids, pooling, denses, device)
        check_close(name, f"token embeddings (length {length})", tokens, hidden)
        check_close(name, f"embedding (length {length})", embedding, by_hand)
        cases.append({"prompt_token_ids": ids, "embedding": rounded(embedding)})
        norms.append(f"{length}:{float(embedding.norm()):.6f}")

    text_cases = []
    for text in TEXTS + [long_text(prompt_rng)]:
        ids = st_input_ids(st, [text])
        tokenizer_ids, _ = encoded_ids(tokenizer, text)
        if ids is None:
            ids = tokenizer_ids
        elif ids != tokenizer_ids:
            raise RuntimeError(f"{name}: sentence-transformers feeds {ids} for {text!r}, its tokenizer gives "
                               f"{tokenizer_ids}")
        file_ids = file_tok.encode(text).ids
        warn_if_file_differs(name, repr(text), ids, file_ids)
        embedding = st_encode(st, text)
        _, by_hand = hand_pool(hand, ids, pooling, denses, device)
        check_close(name, f"encode({text[:30]!r})", embedding, by_hand)
        text_cases.append({"text": text, "prompt_token_ids": ids, "tokenizer_json_token_ids": file_ids,
                           "embedding": rounded(embedding)})

    base.write_json(os.path.join(model_dir, "reference.json"), {
        **reference_header(name, config_dict, seed, pooling=pooling, normalize=True, hidden_size=ENCODER_HIDDEN,
                           **({"dense": {"out_features": DENSE_OUT, "activation": "torch.nn.modules.activation.Tanh"}}
                              if dense else {}),
                           max_seq_length=max_seq_length, **tok_info),
        "cases": cases, "text_cases": text_cases})
    print(f"  {name}: {tensor_count} tensors, embedding norms (length:norm) {' '.join(norms)}; "
          f"text lengths {[len(c['prompt_token_ids']) for c in text_cases]}", flush=True)
    print(f"  {name}: files {' '.join(model_files(model_dir))}", flush=True)


def gemma_embed_config():
    """gemma3-embed-bidirectional's config.json: EmbeddingGemma's keys at the encoder fixtures' sizes."""
    return {"architectures": ["Gemma3TextModel"], "model_type": "gemma3_text", "vocab_size": base.VOCAB,
            "hidden_size": ENCODER_HIDDEN, "intermediate_size": 256, "num_hidden_layers": len(GEMMA_LAYER_TYPES),
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
            "initializer_range": 0.02, "attention_bias": False, "attention_dropout": 0.0,
            "attn_logit_softcapping": None, "final_logit_softcapping": None,
            "use_bidirectional_attention": True, "sliding_window": GEMMA_SLIDING_WINDOW,
            "layer_types": list(GEMMA_LAYER_TYPES),
            "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                                "full_attention": {"rope_type": "default", "rope_theta": 1000000.0}},
            "pad_token_id": 0, "eos_token_id": GEMMA_EOS, "bos_token_id": GEMMA_BOS, "tie_word_embeddings": True,
            "use_cache": True, "dtype": "bfloat16", "transformers_version": transformers.__version__}


def check_gemma_dense_folders(name, model_dir, dense_layers):
    """modules.json's Dense folders, in order, each with model.safetensors and a config.json with dense_layers' sizes,
    no bias and the identity activation (EmbeddingGemma's)."""
    entries = [m for m in read_json(os.path.join(model_dir, "modules.json")) if m.get("type", "").endswith("Dense")]
    if len(entries) != len(dense_layers):
        raise RuntimeError(f"{name}: modules.json lists {len(entries)} Dense modules, not {len(dense_layers)}")
    for entry, (in_features, out_features, _, _) in zip(entries, dense_layers):
        folder = os.path.join(model_dir, entry["path"])
        files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        if "model.safetensors" not in files or "config.json" not in files:
            raise RuntimeError(f"{name}: the Dense folder {entry['path']} holds {files}")
        cfg = read_json(os.path.join(folder, "config.json"))
        found = (cfg.get("in_features"), cfg.get("out_features"), cfg.get("bias"), cfg.get("activation_function"))
        if found != (in_features, out_features, False, IDENTITY):
            raise RuntimeError(f"{name}: {entry['path']}/config.json says (in, out, bias, activation) {found}")
    return [entry["path"] for entry in entries]


def check_gemma_window(name, model_dir, config_dict, models):
    """config.json must carry the fixture's window and every loaded model the halved one: a config re-saved by
    transformers or sentence-transformers carries the halved value, which the next load halves again."""
    on_disk = read_json(os.path.join(model_dir, "config.json"))
    if on_disk != config_dict:  # the fixture's says sliding_window GEMMA_SLIDING_WINDOW
        raise RuntimeError(f"{name}: config.json is not the fixture's (sliding_window {on_disk.get('sliding_window')})")
    for label, model in models:
        cfg = model.config
        found = (cfg.sliding_window, cfg.use_bidirectional_attention, list(cfg.layer_types))
        if found != (GEMMA_EFFECTIVE_WINDOW, True, GEMMA_LAYER_TYPES):
            raise RuntimeError(f"{name}: {label} loaded (sliding_window, use_bidirectional_attention, layer_types) "
                               f"{found}, expected ({GEMMA_EFFECTIVE_WINDOW}, True, {GEMMA_LAYER_TYPES})")


def load_gemma_variant(name, model_dir, device, **overrides):
    """The fixture's Gemma3TextModel with config attributes changed after the config is built (an override given to
    from_pretrained might go through the window-halving __post_init__)."""
    config = transformers.AutoConfig.from_pretrained(model_dir)
    for key, value in overrides.items():
        setattr(config, key, value)
    model = transformers.AutoModel.from_pretrained(model_dir, config=config, attn_implementation="eager",
                                                   **{DTYPE_KWARG: torch.float32}).to(device).eval()
    pool.check_loaded_weights(model, model_dir)
    found = {key: getattr(model.config, key) for key in overrides}
    if found != overrides:
        raise RuntimeError(f"{name}: the variant model loaded {found}, not {overrides}")
    return model


def build_gemma_embedder(index, name, out_dir, device):
    """gemma3-embed-bidirectional: EmbeddingGemma's layout (Gemma3TextModel with bidirectional attention, mean pooling,
    two Dense modules, Normalize), token-id cases only."""
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    seed = seed_of(index)
    config_dict = gemma_embed_config()
    dense_layers = [(ENCODER_HIDDEN, GEMMA_DENSE_HIDDEN, False, torch.nn.Identity()),
                    (GEMMA_DENSE_HIDDEN, ENCODER_HIDDEN, False, torch.nn.Identity())]
    with tempfile.TemporaryDirectory() as staging:
        staged = stage_model(staging, config_dict, transformers.AutoModel, seed)
        pool.save_tokenizer(staging)
        save_sentence_transformer(staging, model_dir, "mean", True, dense_layers, dense_seed=seed + 1,
                                  prompts=EMBEDDINGGEMMA_PROMPTS)
        missing, extra, differing = compare_weight_files(staged, os.path.join(model_dir, "model.safetensors"))
        if missing or extra or differing:
            print(f"  WARNING: {name}: sentence-transformers saved other weights (missing {missing[:3]}, extra "
                  f"{extra[:3]}, differing {differing[:3]}); the staged file replaces them", flush=True)
        saved_window = read_json(os.path.join(model_dir, "config.json")).get("sliding_window")
        print(f"  {name}: sentence-transformers wrote sliding_window {saved_window} (replaced by the fixture's "
              f"{GEMMA_SLIDING_WINDOW})", flush=True)
        shutil.copy(staged, os.path.join(model_dir, "model.safetensors"))
        # The WordLevel tokenizer as written, not as transformers re-saved it under model_type gemma3_text.
        for file in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(staging, file), os.path.join(model_dir, file))
    finish_embedder_layout(model_dir, "mean", GEMMA_MAX_SEQ_LENGTH)
    base.verify_saved_weights(model_dir, "bfloat16", True)
    tensor_count = check_key_layout(model_dir, name, ("embed_tokens.", "layers.", "norm."),
                                    ["embed_tokens.weight", "norm.weight"], ("model.", "lm_head."))
    dense_paths = check_gemma_dense_folders(name, model_dir, dense_layers)

    hand = load_hand_model(model_dir, transformers.AutoModel, device)
    pool.check_loaded_weights(hand, model_dir)
    st = pool.load_sentence_transformer(model_dir, device)
    pool.check_loaded_weights(st[0].auto_model, model_dir)
    check_gemma_window(name, model_dir, config_dict, [("AutoModel", hand), ("SentenceTransformer", st[0].auto_model)])
    denses = dense_modules(st)
    if len(denses) != len(dense_layers):
        raise RuntimeError(f"{name}: the loaded model has {len(denses)} Dense modules, not {len(dense_layers)}")
    if st.default_prompt_name is not None or any(st.prompts.get(k) != v for k, v in EMBEDDINGGEMMA_PROMPTS.items()):
        raise RuntimeError(f"{name}: loaded prompts {st.prompts!r}, default {st.default_prompt_name!r}")

    prompt_rng = random.Random(7000 + index)
    cases, by_length = [], {}
    for length in EMBED_LENGTHS:
        ids = [GEMMA_BOS] + [prompt_rng.randrange(GEMMA_BOS + 1, base.VOCAB) for _ in range(length - 2)] + [GEMMA_EOS]
        tokens, embedding = pool.st_embed(st, ids, device)
        hidden, by_hand = hand_pool(hand, ids, "mean", denses, device)
        check_close(name, f"token embeddings (length {length})", tokens, hidden)
        check_close(name, f"embedding (length {length})", embedding, by_hand)
        cases.append({"prompt_token_ids": ids, "embedding": rounded(embedding)})
        by_length[length] = (ids, embedding)
    del hand

    # The references must depend on both attention rules: a causal copy of the model changes the longest case, and
    # a window over every position (max_position_embeddings) the 40-token one, whose tokens lie up to 39 apart.
    # A variant that cannot be built the same way (an API this script guessed wrong) is reported, not fatal: the
    # references themselves are checked above; a variant that loads and changes nothing fails the run.
    mask_checks = {}
    try:
        ids, embedding = by_length[CAUSAL_CHECK_LENGTH]
        causal = load_gemma_variant(name, model_dir, device, use_bidirectional_attention=False)
        mask_checks["causal_difference"] = float((hand_pool(causal, ids, "mean", denses, device)[1] - embedding).abs().max())
        del causal
        ids, embedding = by_length[WINDOW_CHECK_LENGTH]
        wide = load_gemma_variant(name, model_dir, device, sliding_window=config_dict["max_position_embeddings"])
        mask_checks["window_difference"] = float((hand_pool(wide, ids, "mean", denses, device)[1] - embedding).abs().max())
        del wide
    except Exception as e:  # noqa: BLE001 (reported in reference.json and the log)
        mask_checks["skipped"] = f"{type(e).__name__}: {e}"
        print(f"  WARNING: {name}: the mask variants could not be built: {mask_checks['skipped']}", flush=True)
    print(f"  {name}: mask checks {mask_checks} (causal on the {CAUSAL_CHECK_LENGTH}-token case, a window over every "
          f"position on the {WINDOW_CHECK_LENGTH}-token one)", flush=True)
    if mask_checks.get("causal_difference", 1.0) <= 1e-3 or mask_checks.get("window_difference", 1.0) <= 1e-4:
        raise RuntimeError(f"{name}: the references do not exercise the bidirectional mask (limit 1e-3) or the "
                           f"sliding window (limit 1e-4): {mask_checks}")

    base.write_json(os.path.join(model_dir, "reference.json"), {
        **reference_header(name, config_dict, seed, pooling="mean", normalize=True, hidden_size=ENCODER_HIDDEN,
                           dense=[{"out_features": out_features, "activation": IDENTITY, "bias": bias}
                                  for _, out_features, bias, _ in dense_layers],
                           max_seq_length=GEMMA_MAX_SEQ_LENGTH, sliding_window_file=GEMMA_SLIDING_WINDOW,
                           sliding_window_effective=GEMMA_EFFECTIVE_WINDOW, mask_checks=mask_checks),
        "cases": cases})
    # As make_pooling_fixtures.build_one: the tokenizer was there for sentence-transformers' loader only; the
    # references are token ids and Celer has no WordLevel tokenizer model, so the engine runs this fixture
    # tokenizer-less (the last two files only if the installed transformers wrote them).
    os.remove(os.path.join(model_dir, "tokenizer.json"))
    os.remove(os.path.join(model_dir, "tokenizer_config.json"))
    for file in ("special_tokens_map.json", "added_tokens.json"):
        if os.path.exists(os.path.join(model_dir, file)):
            os.remove(os.path.join(model_dir, file))
    print(f"  {name}: {tensor_count} tensors, Dense folders {' '.join(dense_paths)}, sliding_window "
          f"{GEMMA_SLIDING_WINDOW} in config.json, {GEMMA_EFFECTIVE_WINDOW} loaded; case lengths "
          f"{[len(c['prompt_token_ids']) for c in cases]}", flush=True)
    print(f"  {name}: files {' '.join(model_files(model_dir))}", flush=True)


def build_cross_encoder(index, name, kind, out_dir, device):
    """bert-cross-encoder / xlmr-cross-encoder: saved by CrossEncoder.save, scored by CrossEncoder.predict."""
    bert = kind == "wordpiece"
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    seed = seed_of(index)
    tok_dir, tok_info = shared_tokenizer(kind)
    vocab_size = tok_info["vocab_size"]
    label_cfg = labels(["LABEL_0"])
    config_dict = (bert_config("BertForSequenceClassification", vocab_size, **label_cfg) if bert
                   else xlmr_config("XLMRobertaForSequenceClassification", vocab_size, **label_cfg))
    with tempfile.TemporaryDirectory() as staging:
        copy_tree_files(tok_dir, staging)
        staged = stage_model(staging, config_dict, transformers.AutoModelForSequenceClassification, seed)
        ce = load_cross_encoder(staging, "cpu", torch.bfloat16, activation=torch.nn.Sigmoid())
        save_cross_encoder(ce, model_dir)
        del ce
        missing, extra, differing = compare_weight_files(staged, os.path.join(model_dir, "model.safetensors"))
        if differing:
            raise RuntimeError(f"{name}: CrossEncoder saved other values for {differing[:4]}")
        if missing or extra:
            print(f"  WARNING: {name}: CrossEncoder's file lacks {missing[:4]} and adds {extra[:4]} (kept as saved)",
                  flush=True)
    copy_tree_files(tok_dir, model_dir)  # the shared tokenizer's files, over the ones CrossEncoder re-saved
    base.verify_saved_weights(model_dir, "bfloat16", True)
    if bert:
        tensor_count = check_key_layout(model_dir, name, ("bert.", "classifier."),
                                        ["bert.embeddings.word_embeddings.weight", "bert.pooler.dense.weight",
                                         "classifier.weight", "classifier.bias"])
    else:
        tensor_count = check_key_layout(model_dir, name, ("roberta.", "classifier."),
                                        ["roberta.embeddings.word_embeddings.weight", "classifier.dense.weight",
                                         "classifier.dense.bias", "classifier.out_proj.weight",
                                         "classifier.out_proj.bias"], ("roberta.pooler.",))
    saved_config = read_json(os.path.join(model_dir, "config.json"))
    print(f"  {name}: CrossEncoder wrote config.json with architectures {saved_config.get('architectures')}, "
          f"keys beyond transformers': {[k for k in saved_config if k.startswith('sentence') or k.startswith('sbert')]}",
          flush=True)

    hand = load_hand_model(model_dir, transformers.AutoModelForSequenceClassification, device)
    pool.check_loaded_weights(hand, model_dir)
    ce = load_cross_encoder(model_dir, device, torch.float32)
    pool.check_loaded_weights(ce_model(ce), model_dir)
    activation = ce_activation(ce)
    activation_name = fullname(activation)
    saved_name, saved_in = saved_activation(model_dir)
    if saved_name is not None and saved_name != activation_name:
        print(f"  WARNING: {name}: {saved_in} records activation {saved_name}, CrossEncoder applies "
              f"{activation_name}", flush=True)
    tokenizer = ce.tokenizer
    file_tok = tokenizer_json(model_dir)

    prompt_rng = random.Random(7000 + index)
    pairs = PAIRS + [(long_text(prompt_rng, 12).rstrip(".") + "?", long_text(prompt_rng, 80))]
    records = []
    for query, document in pairs:
        ids, type_ids = encoded_ids(tokenizer, query, document)
        st_ids = st_input_ids(ce, [(query, document)]) if hasattr(ce, "preprocess") else None
        if st_ids is not None and st_ids != ids:
            raise RuntimeError(f"{name}: CrossEncoder feeds {st_ids}, tokenizer(query, document) gives {ids}")
        file_enc = file_tok.encode(query, document)
        warn_if_file_differs(name, f"({query[:20]!r}, {document[:20]!r})", ids, file_enc.ids)
        logit = classify(ce_model(ce), ids, type_ids, device)
        check_close(name, f"logit ({query[:20]!r})", logit, classify(hand, ids, type_ids, device), relative=True)
        scores = ce.predict([(query, document)], show_progress_bar=False)
        score = float(np.asarray(scores, dtype=np.float64).reshape(-1)[0])
        with torch.inference_mode():
            expected = activation(logit.to(torch.float32).reshape(1, -1)).reshape(-1)
        check_close(name, f"score ({query[:20]!r}) against activation(logit)", [score], expected)
        records.append({"query": query, "document": document, "prompt_token_ids": ids, "token_type_ids": type_ids,
                        "tokenizer_json_token_ids": file_enc.ids, "logit": rounded(logit[0]),
                        "score": rounded(score)})

    base.write_json(os.path.join(model_dir, "reference.json"), {
        **reference_header(name, config_dict, seed, num_labels=1, activation=activation_name,
                           activation_saved_in=saved_in, hidden_size=ENCODER_HIDDEN, **tok_info),
        "pairs": records})
    print(f"  {name}: {tensor_count} tensors, activation {activation_name} (saved in {saved_in}); (logit, score) "
          f"{[(r['logit'], r['score']) for r in records]}", flush=True)
    print(f"  {name}: files {' '.join(model_files(model_dir))}", flush=True)


def build_bert_classifier(index, name, out_dir, device):
    """A plain transformers BertForSequenceClassification with three named labels."""
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    seed = seed_of(index)
    tok_dir, tok_info = shared_tokenizer("wordpiece")
    label_names = ["negative", "neutral", "positive"]
    config_dict = bert_config("BertForSequenceClassification", tok_info["vocab_size"], **labels(label_names))
    copy_tree_files(tok_dir, model_dir)
    stage_model(model_dir, config_dict, transformers.AutoModelForSequenceClassification, seed)
    base.verify_saved_weights(model_dir, "bfloat16", True)
    tensor_count = check_key_layout(model_dir, name, ("bert.", "classifier."),
                                    ["bert.pooler.dense.weight", "classifier.weight", "classifier.bias"])

    model = load_hand_model(model_dir, transformers.AutoModelForSequenceClassification, device)
    pool.check_loaded_weights(model, model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    file_tok = tokenizer_json(model_dir)
    prompt_rng = random.Random(7000 + index)
    cases = []
    for text in CLASSIFIER_TEXTS + [long_text(prompt_rng, 40)]:
        ids, type_ids = encoded_ids(tokenizer, text)
        file_ids = file_tok.encode(text).ids
        warn_if_file_differs(name, repr(text), ids, file_ids)
        logits = classify(model, ids, type_ids, device)
        with torch.inference_mode():  # the head by hand over BertModel's pooled output
            input_ids = torch.tensor([ids], device=device)
            pooled = model.bert(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).pooler_output[0]
            by_hand = (model.classifier.weight @ pooled + model.classifier.bias).float().cpu()
        check_close(name, f"logits ({text[:20]!r})", logits, by_hand, relative=True)
        cases.append({"text": text, "prompt_token_ids": ids, "tokenizer_json_token_ids": file_ids,
                      "logits": rounded(logits), "probs": rounded(torch.softmax(logits, dim=-1))})

    base.write_json(os.path.join(model_dir, "reference.json"), {
        **reference_header(name, config_dict, seed, num_labels=len(label_names),
                           id2label=config_dict["id2label"], hidden_size=ENCODER_HIDDEN, **tok_info),
        "cases": cases})
    print(f"  {name}: {tensor_count} tensors, argmax labels "
          f"{[label_names[int(np.argmax(c['logits']))] for c in cases]}", flush=True)
    print(f"  {name}: files {' '.join(model_files(model_dir))}", flush=True)


def build_qwen3_classifier(index, name, out_dir, device):
    """Qwen3ForSequenceClassification: the last token's hidden state through score (no bias)."""
    model_dir = os.path.join(out_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    seed = seed_of(index)
    config_dict = pool._config("Qwen3ForSequenceClassification", "qwen3", attention_bias=False,
                               use_sliding_window=False, sliding_window=None, max_window_layers=2,
                               **labels(["LABEL_0", "LABEL_1"]))
    pad_id = config_dict["pad_token_id"]
    stage_model(model_dir, config_dict, transformers.AutoModelForSequenceClassification, seed)
    base.verify_saved_weights(model_dir, "bfloat16", True)
    tensor_count = check_key_layout(model_dir, name, ("model.", "score.weight"),
                                    ["model.embed_tokens.weight", "model.norm.weight", "score.weight"], ("lm_head",))
    if "score.bias" in safetensors_keys(model_dir):
        raise RuntimeError(f"{name}: the score head has a bias")

    model = load_hand_model(model_dir, transformers.AutoModelForSequenceClassification, device)
    pool.check_loaded_weights(model, model_dir)
    prompt_rng = random.Random(7000 + index)
    cases = []
    for length in QWEN_LENGTHS:
        ids = [prompt_rng.randrange(2, config_dict["vocab_size"]) for _ in range(length)]
        assert pad_id not in ids  # transformers pools the last non-pad token
        logits = classify(model, ids, None, device)
        with torch.inference_mode():  # the last token's hidden state through score, by hand
            input_ids = torch.tensor([ids], device=device)
            hidden = model.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
            by_hand = (model.score.weight @ hidden[0, -1]).float().cpu()
        check_close(name, f"logits (length {length})", logits, by_hand, relative=True)
        cases.append({"prompt_token_ids": ids, "logits": rounded(logits)})

    base.write_json(os.path.join(model_dir, "reference.json"), {
        **reference_header(name, config_dict, seed, num_labels=2, pad_token_id=pad_id,
                           hidden_size=config_dict["hidden_size"]),
        "cases": cases})
    print(f"  {name}: {tensor_count} tensors, logits {[c['logits'] for c in cases]}", flush=True)
    print(f"  {name}: files {' '.join(model_files(model_dir))}", flush=True)


def fixtures():
    """(index, name, build(index, name, out_dir, device)). The indices 90..99 keep prompts and seeds apart from
    the other fixture scripts' (0..17, 50..64, 80..82)."""
    return [
        (90, "bert-embed-mean", functools.partial(build_embedder, kind="wordpiece")),
        (91, "xlmr-embed-cls", functools.partial(build_embedder, kind="unigram")),
        (92, "bert-cross-encoder", functools.partial(build_cross_encoder, kind="wordpiece")),
        (93, "xlmr-cross-encoder", functools.partial(build_cross_encoder, kind="unigram")),
        (94, "bert-classifier", build_bert_classifier),
        (95, "qwen3-seq-cls", build_qwen3_classifier),
        (96, "bert-embed-dense", functools.partial(build_embedder, kind="wordpiece", dense=True)),
        (97, "gemma3-embed-bidirectional", build_gemma_embedder),
    ]


def main():
    print(f"make_encoder_fixtures: sentence-transformers {sentence_transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}", flush=True)

    def build(index, name, builder, out_dir, device):
        print(f"== {name} (index {index}, seed {seed_of(index)})", flush=True)
        builder(index, name, out_dir=out_dir, device=device)

    return base.run_fixtures("make_encoder_fixtures", __doc__.split("\n")[0], [
        (name, functools.partial(build, index, name, builder)) for index, name, builder in fixtures()])


if __name__ == "__main__":
    sys.exit(main())
