# syntax=docker/dockerfile:1
# Training image for the ImageEdit-R1 decomposition agent: CUDA, a GRPO trainer, this package.
#
#   docker build -t imageedit-r1:easyr1 .                         # EasyR1 (the paper's trainer)
#   docker build --build-arg TRAINER=verl -t imageedit-r1:verl .  # upstream verl 0.9.1
#   docker build --target app -t imageedit-r1:app .               # the interactive editor (docs/app.md)
#   docker build --target serve -t imageedit-r1:serve .           # the OpenAI-compatible service (docs/serving.md)
#
# EasyR1 and upstream verl both install a Python package named `verl`, so an image holds one.
# Versions follow each trainer's own supported stack:
#   EasyR1 @ EASYR1_COMMIT: its Dockerfile's NGC PyTorch 25.05 base, torch 2.8.0, vLLM 0.11.0, flash-attn 2.8.3;
#   verl 0.9.1: its [vllm,fsdp] extras (torch 2.11.0, vLLM 0.24.0, flash-attn 2.8.3 for CUDA 13).
ARG TRAINER=easyr1

FROM nvcr.io/nvidia/pytorch:25.05-py3 AS base-easyr1
FROM nvcr.io/nvidia/pytorch:25.09-py3 AS base-verl

# ---------------------------------------------------------------- EasyR1
FROM base-easyr1 AS trainer-easyr1
ARG EASYR1_REPO=https://github.com/hiyouga/EasyR1.git
ARG EASYR1_COMMIT=b44b311b669bf1fd1aa2fc36f2251482ba33cb16
ARG FLASH_ATTN_VERSION=2.8.3
ENV VLLM_WORKER_MULTIPROC_METHOD=spawn PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 EASYR1_DIR=/opt/EasyR1
# The NGC image ships forks of torch and friends that EasyR1's pinned wheels replace.
RUN pip uninstall -y torch torchvision torchaudio pytorch-quantization pytorch-triton torch-tensorrt \
        transformer-engine flash-attn apex megatron-core xgboost opencv grpcio || true
# The same list `make setup-easyr1` installs outside Docker.
COPY recipes/easyr1-requirements.txt /tmp/easyr1-requirements.txt
RUN pip install -r /tmp/easyr1-requirements.txt
RUN ABI=$(python -c "import torch; print('TRUE' if torch._C._GLIBCXX_USE_CXX11_ABI else 'FALSE')") && \
    PY=$(python -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')") && \
    pip install "https://github.com/Dao-AILab/flash-attention/releases/download/v${FLASH_ATTN_VERSION}/flash_attn-${FLASH_ATTN_VERSION}+cu12torch2.8cxx11abi${ABI}-${PY}-${PY}-linux_x86_64.whl"
RUN git clone "$EASYR1_REPO" "$EASYR1_DIR" && git -C "$EASYR1_DIR" checkout "$EASYR1_COMMIT" && \
    pip install --no-deps -e "$EASYR1_DIR"

# ---------------------------------------------------------------- upstream verl
FROM base-verl AS trainer-verl
ENV VLLM_WORKER_MULTIPROC_METHOD=spawn PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1
RUN pip uninstall -y torch torchvision torchaudio pytorch-triton torch-tensorrt transformer-engine flash-attn \
        apex megatron-core || true
RUN pip install "verl[vllm,fsdp]==0.9.1" pandas pyarrow

# ---------------------------------------------------------------- inference images (the app, the service)
# Inference only: NGC's torch (kept: pip is constrained to the installed torch/torchvision), the
# diffusers editors and the hosted-API clients, then each image's own front end; no trainer.
FROM base-verl AS inference
ENV PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 HF_HOME=/cache/huggingface
WORKDIR /workspace/imageedit-r1
COPY pyproject.toml README.md ./
COPY imageedit_r1 ./imageedit_r1
COPY examples ./examples
RUN pip freeze | grep -iE '^(torch|torchvision)==' > /tmp/keep-torch.txt && \
    useradd --create-home --uid 1000 app && mkdir -p /cache/huggingface && chown app /cache/huggingface

# ---------------------------------------------------------------- the interactive editor (docs/app.md)
#   docker build --target app -t imageedit-r1:app .
#   docker run --gpus all -p 127.0.0.1:7860:7860 -v "$HOME/.cache/huggingface:/cache/huggingface" \
#       -e HF_TOKEN imageedit-r1:app                      # then open http://127.0.0.1:7860
FROM inference AS app
ENV GRADIO_ANALYTICS_ENABLED=False
RUN pip install -c /tmp/keep-torch.txt -e ".[diffusers,api,app]" && \
    python -c "import imageedit_r1.app.ui, diffusers; print('app ready')"
USER app
EXPOSE 7860
# Inside the container the app must listen on every interface for -p to reach it; publish the
# port on the host's loopback (-p 127.0.0.1:7860:7860) unless a login is set (IMAGEEDIT_R1_APP_AUTH).
ENTRYPOINT ["python", "-m", "imageedit_r1.app", "--host", "0.0.0.0", "--port", "7860"]
CMD ["--config", "examples/configs/flux_kontext.yaml"]

# ---------------------------------------------------------------- the service (docs/serving.md)
#   docker build --target serve -t imageedit-r1:serve .
#   docker run --gpus all --shm-size 16g -p 127.0.0.1:8000:8000 -v "$HOME/.cache/huggingface:/cache/huggingface" \
#       -e HF_TOKEN -e IMAGEEDIT_R1_API_KEYS="$(cat keys.txt | paste -sd,)" imageedit-r1:serve
# OpenAI's images API on Ray Serve, one editor replica per GPU of the container; the same image runs a
# KubeRay RayService (recipes/k8s/rayservice.yaml), whose operator starts Ray in it instead.
FROM inference AS serve
RUN pip install -c /tmp/keep-torch.txt -e ".[diffusers,api,serve]" && \
    python -c "import imageedit_r1.serve.deployments, diffusers; print('service ready')"
USER app
EXPOSE 8000
# On every interface inside the container, so the service refuses to start without API keys
# (IMAGEEDIT_R1_API_KEYS, comma-separated); publish the port on the host's loopback all the same.
ENTRYPOINT ["python", "-m", "imageedit_r1.serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--config", "examples/configs/flux_kontext.yaml"]

# ---------------------------------------------------------------- this package
FROM trainer-${TRAINER} AS final
ARG TRAINER
ENV IMAGEEDIT_R1_TRAINER=${TRAINER} TOKENIZERS_PARALLELISM=true
WORKDIR /workspace/imageedit-r1
COPY pyproject.toml README.md ./
COPY imageedit_r1 ./imageedit_r1
COPY reward_fns ./reward_fns
COPY recipes ./recipes
COPY benchmarks ./benchmarks
# The reward and the recipes' checks need only the base package (stdlib + omegaconf/jinja2/pillow);
# the trainer stack above owns torch/transformers/vLLM versions, so no extras are installed over it.
RUN pip install --no-deps -e . && pip install "jinja2>=3.1" "omegaconf>=2.3" "pillow>=10.0" "tqdm>=4.66" \
        "matplotlib>=3.8" && \
    python -c "import imageedit_r1.rewards, imageedit_r1.train.preflight; print('imageedit_r1 ready')"
CMD ["bash"]
