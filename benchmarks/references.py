"""The reference recipes, re-implemented as published, for the benchmark to beat.

- the homework's sample models as shipped: fcn with a 3-dim latent, cnn 12-24-48, and its VAE
  (MSE + unweighted KL), trained with Adam 1e-3, batch 2000, 50 epochs, no crop;
- the best student recipe: a fully connected autoencoder 12288-4096-2048-1024-256-128 on the
  resize-256 / centre-crop-196 / resize-64 view of each image;
- no model at all: minus the PNG-compressed size of the image.
All score with the homework's L2 norm of the residual (higher = more anomalous).
"""

import io

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from ad.preprocess import preprocess


def relu_stack(layers):
    """Linear/conv layers with ReLU between them (not after the last)."""
    modules = []
    for i, layer in enumerate(layers):
        modules.append(layer)
        if i < len(layers) - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


class HomeworkFCN(nn.Module):
    def __init__(self, dims=(64 * 64 * 3, 128, 64, 12, 3)):
        super().__init__()
        self.encoder = relu_stack([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        back = dims[::-1]
        self.decoder = nn.Sequential(relu_stack([nn.Linear(a, b) for a, b in zip(back[:-1], back[1:])]),
                                     nn.Tanh())

    def forward(self, x):
        return self.decoder(self.encoder(x.flatten(1))).view_as(x)


class HomeworkCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(relu_stack([nn.Conv2d(3, 12, 4, 2, 1), nn.Conv2d(12, 24, 4, 2, 1),
                                                 nn.Conv2d(24, 48, 4, 2, 1)]), nn.ReLU())
        self.decoder = nn.Sequential(relu_stack([nn.ConvTranspose2d(48, 24, 4, 2, 1),
                                                 nn.ConvTranspose2d(24, 12, 4, 2, 1),
                                                 nn.ConvTranspose2d(12, 3, 4, 2, 1)]), nn.Tanh())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class HomeworkVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(relu_stack([nn.Conv2d(3, 12, 4, 2, 1), nn.Conv2d(12, 24, 4, 2, 1)]),
                                     nn.ReLU())
        self.mean = nn.Sequential(nn.Conv2d(24, 48, 4, 2, 1), nn.ReLU())
        self.log_var = nn.Sequential(nn.Conv2d(24, 48, 4, 2, 1), nn.ReLU())
        self.decoder = HomeworkCNN().decoder

    def sample(self, x):
        h = self.encoder(x)
        mean, log_var = self.mean(h), self.log_var(h)
        return self.decoder(mean + torch.randn_like(mean) * (0.5 * log_var).exp()), mean, log_var

    def forward(self, x):
        return self.sample(x)[0]  # as shipped, it scores a sampled reconstruction, not the mean

    def loss(self, x):
        reconstruction, mean, log_var = self.sample(x)
        kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
        return F.mse_loss(reconstruction, x) + kl  # the homework's: KL summed, MSE averaged


def student_view(images):
    """Resize 64 -> 256, centre-crop 196, resize back to 64: the best student's preprocessing."""
    x = F.interpolate(preprocess(images), size=256, mode="bilinear", align_corners=False)
    start = (256 - 196) // 2
    x = x[:, :, start:start + 196, start:start + 196]
    return F.interpolate(x, size=64, mode="bilinear", align_corners=False, antialias=True)


RECIPES = {
    # name: (model factory, view, epochs, batch size, learning rate)
    "homework fcn (latent 3)": (HomeworkFCN, preprocess, 50, 2000, 1e-3),
    "homework cnn 12-24-48": (HomeworkCNN, preprocess, 50, 2000, 1e-3),
    "homework vae": (HomeworkVAE, preprocess, 50, 2000, 1e-3),
    "student fcn 4096-...-128": (lambda: HomeworkFCN((64 * 64 * 3, 4096, 2048, 1024, 256, 128)),
                                 student_view, 10, 256, 1e-4),
}


def train_reference(name, images, seed=0):
    factory, view, epochs, batch_size, lr = RECIPES[name]
    torch.manual_seed(seed)
    model = factory()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(epochs), desc=name, leave=False):
        order = rng.permutation(len(images))
        for start in range(0, len(order), batch_size):
            x = view(images[np.sort(order[start:start + batch_size])])
            loss = model.loss(x) if hasattr(model, "loss") else F.mse_loss(model(x), x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval(), view


@torch.inference_mode()
def reference_scores(model, view, images, batch_size=256):
    scores = []
    for start in range(0, len(images), batch_size):
        x = view(images[start:start + batch_size])
        scores.append((x - model(x)).flatten(1).norm(dim=1))
    return torch.cat(scores).numpy()


def png_size_scores(images):
    """Minus the PNG-compressed size: simple images (smooth, few colours) look anomalous here."""
    sizes = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
        sizes.append(len(buffer.getvalue()))
    return -np.array(sizes, dtype=np.float64)
