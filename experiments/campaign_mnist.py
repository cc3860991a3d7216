"""Architecture search on MNIST-5k (14x14): the learned rule against Adam with an LR grid.

53 candidates: image MLPs (depth 1-3, width 16-256, relu/tanh/gelu) and CNNs (channels (8,) or
(8, 16), kernel 3 or 5, with or without GroupNorm). Aging evolution trains 24 of them per side for
300 steps: with `pretrained:default` once each (no tuning), and with Adam over a 4-point
learning-rate grid each. Each side's best is then trained for 1,000 steps with the rule and with
AdamW tuned over 3 learning rates, 3 seeds, and scored on the test split.

    metalearn campaign --config experiments/campaign_mnist.py --workdir runs/campaign_mnist

See docs/search.md (architecture search and campaigns) for the measured result.
"""


def get_config():
  return {
      "name": "campaign_mnist",
      "rule": "pretrained:default",
      "dataset": "mnist5k_14",
      "space": {"mlp": {"depths": [1, 2, 3], "widths": [16, 32, 64, 128, 256],
                        "activations": ["relu", "tanh", "gelu"]},
                "cnn": {"channels": [(8,), (8, 16)], "kernels": [3, 5],
                        "norms": ["none", "group"]}},
      "strategy": "evolution",
      "strategy_kwargs": {"population": 8, "sample": 3},
      "budget": 24,
      "num_steps": 300,
      "batch_size": 64,
      "seeds": (0,),
      "adam_lrs": (1e-3, 3e-3, 1e-2, 3e-2),
      "compare_adam": True,
      "final_steps": 1000,
      "final_lrs": (1e-3, 3e-3, 1e-2),
      "final_seeds": (0, 1, 2),
  }
