"""Where models run: cuda, then mps, then the CPU; the batch size that suits each."""

import torch

# A CPU is fastest with batches that stay in its caches, a GPU with large ones (measured by
# benchmarks/speed.py: on 2 cores geo slowed sharply above 128, the autoencoders less so).
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 128, 1024


def pick_device(local_rank=0):
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_batch_size(device):
    return CPU_BATCH_SIZE if torch.device(device).type == "cpu" else GPU_BATCH_SIZE
