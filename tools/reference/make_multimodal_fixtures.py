#!/usr/bin/env python3
"""Image processor outputs and a tiny random LLaVA model with transformers' greedy outputs, as references.

Usage: python3 tools/reference/make_multimodal_fixtures.py --out DIR [--only NAME ...]

Writes
  DIR/clip-processor/reference.json   CLIPImageProcessor's pixel values for generated images under several
                                      preprocessor configs, from the PIL ("slow") processor, the torchvision
                                      ("fast") one where it is installed, and the class AutoImageProcessor picks;
  DIR/llava-clip-bf16/                config.json, model.safetensors, preprocessor_config.json, reference.json:
                                      a LlavaForConditionalGeneration (CLIP vision tower, 2-layer GELU projector,
                                      Llama text model) with random weights stored in bf16;
  DIR/llava-siglip-bf16/              the same with a SigLIP vision tower (no class token, no pre-norm, a patch
                                      bias, tanh GELU; its pooling head stored but unread), the "full" feature
                                      strategy on the last layer, SiglipImageProcessor and a Qwen2 text model, as
                                      llava-interleave-qwen is built.

Images are generated here from a seeded generator (smooth gradients, hard edges and noise, so resampling filters
differ visibly) and stored in the JSON as raw RGB bytes (base64), so Celer's tests need no image decoder to read
them. Float arrays are base64 little-endian float32.

The model references follow make_model_fixtures.py: weights loaded back in fp32, eager attention, TF32 off, a
manual greedy loop through the KV cache, logprobs from log_softmax of the raw logits, and a seed is rejected if the
smallest top-1/top-2 margin is below MIN_MARGIN. Prompts are random token ids with each image's placeholder
token repeated as many times as the image has features (what LlavaProcessor's expansion produces), so the
references need no tokenizer. The image features (the projector's output) are recorded too, so the vision tower
can be checked alone.
"""

import base64
import functools
import os
import random
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import (  # noqa: E402
    DECODE_STEPS, MAX_SEED_ATTEMPTS, MIN_MARGIN, WEIGHT_STD, record_case, run_fixtures, write_json)

VOCAB = 512
IMAGE_TOKEN = VOCAB - 1
IMAGE_SIZE = 56
PATCH = 14
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# (width, height): smaller and larger than the target, portrait and landscape, odd sizes, a 1-pixel-wide strip.
IMAGE_SIZES = [(37, 53), (300, 200), (56, 56), (131, 97), (400, 61), (1, 40)]

PROCESSOR_CONFIGS = {
    "llava-shortest-edge-crop": {
        "do_resize": True, "size": {"shortest_edge": IMAGE_SIZE}, "resample": 3,
        "do_center_crop": True, "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True,
    },
    "fixed-size-bilinear-no-crop": {
        "do_resize": True, "size": {"height": 48, "width": 64}, "resample": 2,
        "do_center_crop": False, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
    },
    "crop-larger-than-image-no-resize": {
        "do_resize": False, "do_center_crop": True, "crop_size": {"height": 64, "width": 72},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "do_convert_rgb": True,
    },
}


def b64_floats(array):
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def make_image(width, height, seed):
    """RGB uint8 [height, width, 3]: gradients, a bright disc with a hard edge, stripes and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    r = 255 * u
    g = 255 * (0.5 + 0.5 * np.sin(6.0 * v + 3.0 * u))
    b = 255 * ((np.floor(x / 3) + np.floor(y / 5)) % 2)
    disc = (u - 0.6) ** 2 + (v - 0.4) ** 2 < 0.05
    image = np.stack([r, g, b], axis=-1)
    image[disc] = [250, 240, 10]
    image += rng.normal(0, 12, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def processor_outputs(config_dict, images, tmp_dir):
    """pixel_values per image from the slow processor, the fast one (None if it cannot run) and the auto class."""
    from PIL import Image
    os.makedirs(tmp_dir, exist_ok=True)
    write_json(os.path.join(tmp_dir, "preprocessor_config.json"), dict(config_dict, image_processor_type="CLIPImageProcessor"))
    slow = load_processor(tmp_dir, "pil")
    try:
        fast = load_processor(tmp_dir, "torchvision")
    except Exception as e:  # noqa: BLE001 - torchvision missing: recorded as absent
        print(f"  torchvision processor unavailable: {type(e).__name__}: {e}", flush=True)
        fast = None
    default = transformers.AutoImageProcessor.from_pretrained(tmp_dir)
    results = []
    for image in images:
        pil = Image.fromarray(image, mode="RGB")
        s = pixel_values(slow, pil)
        f = pixel_values(fast, pil) if fast is not None else None
        d = pixel_values(default, pil)
        results.append((s, f, d))
    return results, f"{type(default).__name__} ({getattr(default, 'backend', '?')})"


def load_processor(directory, backend):
    """transformers 5.17 selects the PIL or torchvision implementation with backend=; older ones with use_fast."""
    try:
        return transformers.AutoImageProcessor.from_pretrained(directory, backend=backend)
    except TypeError:
        return transformers.AutoImageProcessor.from_pretrained(directory, use_fast=backend == "torchvision")


def pixel_values(processor, pil):
    values = processor(images=pil, return_tensors="pt")["pixel_values"][0]
    return values.float().cpu().numpy()


def build_processor(out_dir, device):
    del device
    target = os.path.join(out_dir, "clip-processor")
    os.makedirs(target, exist_ok=True)
    images = [make_image(w, h, 100 + i) for i, (w, h) in enumerate(IMAGE_SIZES)]
    cases = []
    for name, config_dict in PROCESSOR_CONFIGS.items():
        outputs, auto = processor_outputs(config_dict, images, os.path.join(target, "tmp"))
        for image, (slow, fast, default) in zip(images, outputs):
            case = {"config": name, "image": image_entry(image), "shape": list(slow.shape), "slow": b64_floats(slow),
                    "default_vs_slow_max_abs": float(np.abs(default - slow).max())}
            if fast is not None:
                case["fast"] = b64_floats(fast)
                case["fast_vs_slow_max_abs"] = float(np.abs(fast - slow).max())
            cases.append(case)
        print(f"  clip-processor {name}: default {auto}, torchvision vs PIL max |diff| "
              f"{max((c.get('fast_vs_slow_max_abs', 0) for c in cases), default=0):.4f}, default vs PIL "
              f"{max(c['default_vs_slow_max_abs'] for c in cases):.4f}", flush=True)
    for f in os.listdir(os.path.join(target, "tmp")):
        os.remove(os.path.join(target, "tmp", f))
    os.rmdir(os.path.join(target, "tmp"))
    write_json(os.path.join(target, "reference.json"), {
        "transformers_version": transformers.__version__,
        "default_processor": auto,
        "configs": {name: dict(c, image_processor_type="CLIPImageProcessor") for name, c in PROCESSOR_CONFIGS.items()},
        "cases": cases})


def image_entry(image):
    h, w, _ = image.shape
    return {"width": int(w), "height": int(h), "rgb": base64.b64encode(image.tobytes()).decode("ascii")}


SIGLIP_PROCESSOR = {
    "image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
}


def llava_siglip_config():
    return dict(
        llava_config(),
        image_seq_length=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_config={
            "model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_channels": 3,
            "image_size": IMAGE_SIZE, "patch_size": PATCH, "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
        },
        text_config={
            "model_type": "qwen2", "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 160,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "hidden_act": "silu", "tie_word_embeddings": False,
        })


def llava_config():
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "image_token_index": IMAGE_TOKEN,
        "image_seq_length": (IMAGE_SIZE // PATCH) ** 2,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 3, "num_attention_heads": 4, "num_channels": 3,
            "image_size": IMAGE_SIZE, "patch_size": PATCH, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5, "projection_dim": 32,
        },
        "text_config": {
            "model_type": "llama", "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 160,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "hidden_act": "silu", "tie_word_embeddings": False,
        },
    }


def fill_llava_weights(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("language_model.norm.weight"):
                values = 2.5 + torch.rand(param.shape, generator=gen)
            elif name.endswith(".bias") or name.endswith("class_embedding"):
                values = torch.randn(param.shape, generator=gen) * WEIGHT_STD
            elif param.dim() == 1:
                values = 0.5 + torch.rand(param.shape, generator=gen)
            else:
                values = torch.randn(param.shape, generator=gen) * WEIGHT_STD
            param.copy_(values.to(param.dtype))


class _WithImages(torch.nn.Module):
    """record_case drives model(input_ids=…, position_ids=…, past_key_values=…): the first call (the prompt) also
    gets the images' pixel values, as a serving engine's prefill does."""

    def __init__(self, model, pixel_values):
        super().__init__()
        self.model, self.pixel_values = model, pixel_values

    def forward(self, input_ids, position_ids=None, past_key_values=None, use_cache=True):
        first = past_key_values is None and bool((input_ids == IMAGE_TOKEN).any())
        return self.model(input_ids=input_ids, position_ids=position_ids, past_key_values=past_key_values,
                          use_cache=use_cache, pixel_values=self.pixel_values if first else None)


@torch.inference_mode()
def projector_output(model, pixel_values):
    """The image's features as the language model receives them: what the projector returns."""
    projector = model.model.multi_modal_projector if hasattr(model, "model") else model.multi_modal_projector
    captured = []
    handle = projector.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        model.get_image_features(pixel_values=pixel_values)
    finally:
        handle.remove()
    return captured[0].reshape(-1, captured[0].shape[-1]).float().cpu().numpy()


def build_llava(out_dir, device):
    build_llava_variant(out_dir, device, "llava-clip-bf16", llava_config(),
                        dict(PROCESSOR_CONFIGS["llava-shortest-edge-crop"], image_processor_type="CLIPImageProcessor"), 5000)


def build_llava_siglip(out_dir, device):
    build_llava_variant(out_dir, device, "llava-siglip-bf16", llava_siglip_config(), SIGLIP_PROCESSOR, 6000)


def build_llava_variant(out_dir, device, name, config_dict, processor_config, first_seed):
    model_dir = os.path.join(out_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    features = config_dict["image_seq_length"]
    write_json(os.path.join(model_dir, "preprocessor_config.json"), processor_config)
    images = [make_image(97, 131, 900), make_image(300, 200, 901)]
    processor = load_processor(model_dir, "pil")
    from PIL import Image
    pixels = [torch.from_numpy(pixel_values(processor, Image.fromarray(i, mode="RGB"))).unsqueeze(0) for i in images]

    rng = random.Random(7100)
    text = lambda n: [rng.randrange(VOCAB - 1) for _ in range(n)]  # noqa: E731 - never the image token
    image_run = [IMAGE_TOKEN] * features
    prompts = [  # (token ids, images in order)
        (text(3) + image_run + text(5), [0]),
        (image_run + text(9), [1]),
        (text(2) + image_run + text(4) + image_run + text(6), [0, 1]),
        (text(7) + image_run + text(30), [1]),  # crosses several 16-token blocks after the image
        (text(11), []),
    ]

    for attempt in range(MAX_SEED_ATTEMPTS):
        seed = first_seed + attempt
        torch.manual_seed(seed)
        write_json(os.path.join(model_dir, "config.json"), config_dict)
        config = transformers.AutoConfig.from_pretrained(model_dir)
        model = transformers.LlavaForConditionalGeneration(config).to(torch.float32)
        fill_llava_weights(model, seed)
        model.to(torch.bfloat16).save_pretrained(model_dir)
        write_json(os.path.join(model_dir, "config.json"), config_dict)

        ref = transformers.LlavaForConditionalGeneration.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="eager").to(device).eval()
        image_features = [projector_output(ref, p.to(device)) for p in pixels]
        cases, margin = [], float("inf")
        try:
            for ids, which in prompts:
                pv = torch.cat([pixels[i] for i in which]).to(device) if which else None
                case, case_margin = record_case(_WithImages(ref, pv), ids, DECODE_STEPS, device)
                case["images"] = which
                cases.append(case)
                margin = min(margin, case_margin)
        except ValueError as e:
            # Random weights may generate the image token itself, which transformers then counts as a placeholder.
            if "image tokens do not match" not in str(e):
                raise
            print(f"  {name}: seed {seed} generates the image token; next seed", flush=True)
            continue
        print(f"  {name}: seed {seed}, min top1-top2 margin {margin:.4f}", flush=True)
        if margin >= MIN_MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no seed gave decisive greedy choices")

    write_json(os.path.join(model_dir, "reference.json"), {
        "model": name, "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "dtype": "float32", "storage_dtype": "bfloat16", "weight_seed": seed, "min_greedy_margin": margin,
        "image_token_id": IMAGE_TOKEN, "features_per_image": features,
        "images": [dict(image_entry(i), pixel_values=b64_floats(p[0].numpy()), pixel_shape=list(p[0].shape),
                        features=b64_floats(f), feature_shape=list(f.shape))
                   for i, p, f in zip(images, pixels, image_features)],
        "cases": cases})


def main():
    return run_fixtures("make_multimodal_fixtures", __doc__.split("\n")[0], [
        ("clip-processor", build_processor),
        ("llava-clip-bf16", build_llava),
        ("llava-siglip-bf16", build_llava_siglip),
    ])


if __name__ == "__main__":
    sys.exit(main())
