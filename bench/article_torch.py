"""Baseline: the article's PyTorch training loop, as one process.

`python bench/article_torch.py [steps]`: Linear(1, 1), SGD(0.01), summed squared error,
500 steps of forward / loss / zero_grad / backward / step, then a prediction at 10.
Standalone on purpose: it uses nothing from this toolkit.
"""

import sys

import torch

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 500
xs = torch.tensor([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]])
ys = torch.tensor([[-3.0], [-1.0], [1.0], [3.0], [5.0], [7.0]])
model = torch.nn.Linear(1, 1)
criterion = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(steps):
    loss = criterion(model(xs), ys)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
with torch.no_grad():
    print(model(torch.tensor([[10.0]])).item())
