"""A tiny random-weight Qwen2.5-VL saved like a hub checkpoint, built offline in a few seconds.

The folder holds everything ``from_pretrained`` needs: the model (2 text layers, hidden 128,
2 heads of 64 so vLLM's CPU attention kernels accept it; a 2-block vision tower), a byte-level
BPE tokenizer trained locally with ``tokenizers`` and carrying the Qwen special tokens, the
Qwen2.5-VL chat template, and the processor with its image and video sub-processors.

It answers garbage (random weights) but exercises every code path of a real checkpoint:
chat template, vision tokens, mRoPE positions, generation, saving and loading.

The build is deterministic (fixed seed, sorted alphabet and training text, no merges of pairs
seen once), so two processes produce the same tokenizer and weights.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path

from imageedit_r1.image_budget import ImageBudget, write_budget

# Bump when the build changes so a reused folder from an older build is rebuilt.
BUILD_VERSION = "tiny-qwen25vl-v2"  # v2: records its image budget
_STAMP = "tiny_qwen_build.json"

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# The Qwen2.5-VL chat template: a system turn by default, images and videos as
# <|vision_start|><|image_pad|><|vision_end|> placeholders the processor expands.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Small images keep the vision tower cheap: 28x28 pixels per merged vision token.
MIN_PIXELS = 28 * 28 * 4
MAX_PIXELS = 28 * 28 * 16

_TRAINING_TEXT = """
You are a helpful assistant. Read the user's edit request and look at the image.
Change the color of her coat and possibly hair to scarlet or copper red.
Remove the car in the background and make the sky look like a sunset.
Add a red hat to the dog, replace the lamp with a plant, blur the background.
Restore this old photo, remove scratches and colorize it. Make him smile.
<think>The request asks to recolor the coat and hair.</think>
<action>["Recoloring"]</action><subjects>["coat", "hair"]</subjects><goals>["scarlet or copper red"]</goals>
["Recoloring coat to scarlet", "Recoloring hair to copper red"]
{"actions": ["Removal"], "subjects": ["car"], "goals": ["empty street"]}
{"sub_requests": ["Remove the car", "Make the sky a sunset"]}
Addition Removal Replacement Recoloring Colorization Restoration Enhancement Tone Adjustment Relighting
Background Change Style Transfer Text Editing Blur Crop Extension Pose Change Expression Change
Material Change Move Resize Retouching Weather Change Compositing Transformation
the a an of to in on with and or for is it this that image photo picture sky person
0 1 2 3 4 5 6 7 8 9 , . : ; ! ? ' " ( ) [ ] { } < > / \\ - _ = + * & % $ # @
"""

_VOCAB_SIZE = 640


def build_tokenizer():
    """A byte-level BPE ``tokenizers.Tokenizer`` trained here, with the Qwen special tokens.

    Deterministic: the full byte alphabet is given up front (sorted), the training lines are
    sorted, and pairs seen once are never merged (where ties between equal counts would live).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        min_frequency=2,
        initial_alphabet=sorted(pre_tokenizers.ByteLevel.alphabet()),
        special_tokens=[],
        show_progress=False,
    )
    lines = sorted(line for line in _TRAINING_TEXT.splitlines() if line.strip())
    tokenizer.train_from_iterator(lines, trainer)
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer


def _save_tokenizer_and_processor(out_dir: Path):
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=8192,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS * 2)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _save_model(out_dir: Path, tokenizer, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    token_id = tokenizer.convert_tokens_to_ids
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 8192,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12]},
        "bos_token_id": token_id("<|endoftext|>"),
        "eos_token_id": token_id("<|im_end|>"),
        "pad_token_id": token_id("<|endoftext|>"),
    }
    vision_config = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": 128,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [1],
    }
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=token_id("<|endoftext|>"),
        eos_token_id=[token_id("<|im_end|>"), token_id("<|endoftext|>")],
        pad_token_id=token_id("<|endoftext|>"),
        do_sample=False,
    )
    model.save_pretrained(out_dir)


_lock = threading.Lock()
_built: dict[str, Path] = {}
_default_dir: Path | None = None


def _is_complete(out_dir: Path, seed: int) -> bool:
    stamp = out_dir / _STAMP
    if not stamp.exists():
        return False
    try:
        info = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return info.get("version") == BUILD_VERSION and info.get("seed") == seed


def build_tiny_qwen25vl(out_dir: str | Path | None = None, *, seed: int = 0) -> Path:
    """Write (once per process) a tiny random-weight Qwen2.5-VL checkpoint and return its folder.

    ``out_dir=None`` builds into a temporary folder removed at exit. A folder that already holds
    a complete build of this version and seed is reused as is.
    """
    global _default_dir
    with _lock:
        if out_dir is None:
            if _default_dir is None:
                _default_dir = Path(tempfile.mkdtemp(prefix="tiny-qwen25vl-"))
                atexit.register(shutil.rmtree, _default_dir, ignore_errors=True)
            out_dir = _default_dir
        out_dir = Path(out_dir).resolve()
        key = f"{out_dir}:{seed}"
        if key in _built and _is_complete(out_dir, seed):
            return _built[key]
        if not _is_complete(out_dir, seed):
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / _STAMP).unlink(missing_ok=True)
            tokenizer = _save_tokenizer_and_processor(out_dir)
            # Like an exported agent, the tiny checkpoint carries its image budget: a small one,
            # so the backends' default ("auto": the recorded budget) keeps the vision tower cheap.
            write_budget(out_dir, ImageBudget(MIN_PIXELS, MAX_PIXELS))
            _save_model(out_dir, tokenizer, seed)
            # Written last: a build killed halfway is never mistaken for a complete one.
            (out_dir / _STAMP).write_text(json.dumps({"version": BUILD_VERSION, "seed": seed}))
        _built[key] = out_dir
        return out_dir


def fingerprint(model_dir: str | Path) -> str:
    """sha256 over the folder's files (names and bytes): equal for equal builds."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
