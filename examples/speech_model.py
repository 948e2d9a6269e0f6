"""The bundled example: a small PyTorch speech tagger, and the script that
trains it for a few steps and writes `examples/speech_tagger.pt`.

    python examples/speech_model.py   # rewrites examples/speech_tagger.pt

The model is typical of what gets ported: a linear front on 40 filterbank
features, a 2-layer bidirectional LSTM with projection, and a per-frame head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

CHECKPOINT = Path(__file__).with_name("speech_tagger.pt")
N_FEATURES, N_CLASSES = 40, 10


class SpeechTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Linear(N_FEATURES, 64)
        self.encoder = nn.Module()
        self.encoder.lstm = nn.LSTM(
            64, 96, num_layers=2, bidirectional=True, proj_size=48, batch_first=True
        )
        self.head = nn.Linear(2 * 48, N_CLASSES)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.front(features))
        output, _ = self.encoder.lstm(hidden)
        return self.head(output)


def train_and_save(path: Path = CHECKPOINT, steps: int = 30) -> None:
    """A few steps on a synthetic task, so that the weights are not the init."""
    torch.manual_seed(0)
    model = SpeechTagger()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x = torch.randn(8, 50, N_FEATURES)
        y = (x[..., :N_CLASSES].cumsum(1) > 0).long().argmax(-1)  # a toy label
        loss = nn.functional.cross_entropy(model(x).transpose(1, 2), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.save(model.state_dict(), path)


if __name__ == "__main__":
    train_and_save()
    print(f"wrote {CHECKPOINT}")
