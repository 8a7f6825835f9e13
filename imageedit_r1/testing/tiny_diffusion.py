"""Tiny random-weight diffusion editors saved to disk and loaded back with ``from_pretrained``.

``build_tiny_flux_kontext(out_dir)`` writes a FluxKontextPipeline (1 double + 1 single transformer
block, a one-level VAE, small CLIP and T5 encoders) whose CLIP byte-level BPE and T5 Unigram
tokenizers are trained here on a small corpus of edit requests. ``build_tiny_qwen_image_edit(out_dir)``
writes a QwenImageEditPipeline whose text encoder is the tiny Qwen2.5-VL of
``imageedit_r1.testing.tiny_qwen``. Both are deterministic (fixed seeds, tokenizer vocabularies put
in a canonical order) and built once per process per folder. Their outputs are noise: they exist
to exercise the real loading and calling code without downloads.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
from pathlib import Path

# Bump when a builder changes so that a reused folder from an older build is rebuilt.
BUILD_VERSION = "tiny-diffusion-v1"
_STAMP = "tiny_diffusion_build.json"
_BUILT: dict[tuple[str, str], Path] = {}
_DEFAULT_DIRS: dict[str, Path] = {}
_LOCK = threading.Lock()

# A small corpus in the domain of the prompts: what the tiny tokenizers are trained on.
CORPUS = [
    "Change the color of her coat and possibly hair to scarlet or copper red.",
    "Recoloring coat to scarlet. Recoloring hair to copper red.",
    "Restore the color on this black and white photo and enhance the image to show more detail.",
    "Please remove the lady and her hand from the image, and also remove the bright white strip on the left.",
    "Retain the orange balloons in the background but blur them a little.",
    "Enhance the visibility and clarity of the handwritten text for a tattoo.",
    "Replace the sky with a warm sunset, add a small boat on the lake, and remove the car.",
    "Make the house blue, brighten the picture and crop it to a square.",
    "Turn the photo into a watercolor painting; keep the people unchanged.",
    "Add snow on the roof, move the dog to the left, and change her expression to a smile.",
    "0 1 2 3 4 5 6 7 8 9 , . ; : ! ? ' \" ( ) [ ] - _ / & % + = < > # @",
]


def _corpus_lines(repeat: int = 8) -> list[str]:
    return [line for _ in range(repeat) for line in CORPUS]


# ----------------------------------------------------------------------------- tokenizers


def train_clip_tokenizer(vocab_size: int = 400):
    """A CLIP tokenizer (byte-level BPE with ``</w>`` word ends) trained on ``CORPUS``."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>", continuing_subword_prefix=""))
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(
            Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
            behavior="removed",
            invert=True,
        ),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        end_of_word_suffix="</w>",
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus_lines(), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    # The trainer's merge list is stable but its id assignment follows hash order: re-number the
    # vocabulary canonically (specials, base symbols sorted, then merge results in merge order).
    merged = [a + b for a, b in merges]
    base = sorted(set(model["vocab"]) - set(merged) - set(specials))
    vocab: dict[str, int] = {}
    for token in [*specials, *base, *merged]:
        vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def train_t5_tokenizer(vocab_size: int = 300):
    """A T5 tokenizer (SentencePiece-style Unigram over ``▁``-marked words) trained on ``CORPUS``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    specials = ["<pad>", "</s>", "<unk>"]
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    unigram.train_from_iterator(_corpus_lines(), trainer)
    pieces = json.loads(unigram.to_str())["model"]["vocab"]
    # Scores are rounded and pieces sorted so the vocabulary is identical in every process.
    learned = sorted((piece, round(score, 1)) for piece, score in pieces if piece not in specials)
    if not any(piece == "▁" for piece, _ in learned):
        learned.append(("▁", -2.0))
    vocab = [(piece, 0.0) for piece in specials] + learned
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


# ----------------------------------------------------------------------------- building once


def _seeded(seed: int):
    import torch

    torch.manual_seed(seed)


def _build_once(kind: str, out_dir: str | Path | None, write) -> Path:
    """Run ``write(folder)`` unless this process already built ``kind`` there or a complete build exists.

    ``out_dir=None`` builds into a temporary folder removed at exit. A stamp file written last
    marks a complete build, so a build killed halfway is redone rather than trusted.
    """
    with _LOCK:
        if out_dir is None:
            if kind not in _DEFAULT_DIRS:
                _DEFAULT_DIRS[kind] = Path(tempfile.mkdtemp(prefix=f"tiny-{kind}-"))
                atexit.register(shutil.rmtree, _DEFAULT_DIRS[kind], ignore_errors=True)
            out_dir = _DEFAULT_DIRS[kind]
        out_dir = Path(out_dir).resolve()
        key = (kind, str(out_dir))
        stamp = out_dir / _STAMP
        expected = {"kind": kind, "version": BUILD_VERSION}
        complete = stamp.exists() and _read_json(stamp) == expected
        if key in _BUILT and complete:
            return _BUILT[key]
        if not complete:
            out_dir.mkdir(parents=True, exist_ok=True)
            stamp.unlink(missing_ok=True)
            write(out_dir)
            stamp.write_text(json.dumps(expected))
        _BUILT[key] = out_dir
        return out_dir


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ----------------------------------------------------------------------------- FLUX.1 Kontext


def build_tiny_flux_kontext(out_dir: str | Path | None = None) -> Path:
    """Write a tiny random FluxKontextPipeline (once per process) and return its folder."""
    return _build_once("flux-kontext", out_dir, _write_tiny_flux_kontext)


def _write_tiny_flux_kontext(out_dir: Path) -> None:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = train_clip_tokenizer()
    tokenizer_2 = train_t5_tokenizer()
    _seeded(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    _seeded(1)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    _seeded(2)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
            decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    _seeded(3)
    vae = AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir)


# ----------------------------------------------------------------------------- Qwen-Image-Edit


def build_tiny_qwen_image_edit(out_dir: str | Path | None = None) -> Path:
    """Write a tiny random QwenImageEditPipeline (once per process) and return its folder.

    Its text encoder, tokenizer and processor are the tiny Qwen2.5-VL of ``imageedit_r1.testing.tiny_qwen``.
    """
    return _build_once("qwen-image-edit", out_dir, _write_tiny_qwen_image_edit)


def _write_tiny_qwen_image_edit(out_dir: Path) -> None:
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from imageedit_r1.testing.tiny_qwen import build_tiny_qwen25vl

    # The text encoder is built inside the output folder and removed once loaded: the pipeline
    # saves its own copy under text_encoder/, and a builder writes nowhere but where it is told.
    qwen_dir = build_tiny_qwen25vl(out_dir / ".build-text-encoder")
    text_encoder = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir)
    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    processor = AutoProcessor.from_pretrained(qwen_dir)
    shutil.rmtree(qwen_dir, ignore_errors=True)
    z_dim = 4
    _seeded(4)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=z_dim * 4,
        out_channels=z_dim,
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_encoder.config.text_config.hidden_size,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    _seeded(5)
    vae = AutoencoderKLQwenImage(
        base_dim=z_dim,
        z_dim=z_dim,
        # Four 2x levels (16x, vs 8x for the real VAE): the pipeline always encodes the context
        # image at ~1024², and this keeps that cheap on a CPU.
        dim_mult=[1, 1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, False, True, True],
        latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim,
    )
    pipe = QwenImageEditPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor,
        transformer=transformer,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir)
