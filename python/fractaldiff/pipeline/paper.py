"""The paper's reported numbers (Hennick & De Baerdemacker, arXiv 2503.22478), for comparison."""

from __future__ import annotations

__all__ = ["PAPER"]

PAPER = {
    "reference": "Hennick & De Baerdemacker, Almost Bayesian: Dynamics of SGD Through Singular "
                 "Learning Theory, arXiv 2503.22478 (ICLR 2026)",
    # Table 1: lambda, d_s, alpha (slope of log R vs log t), r^2
    "table1": [
        {"model": "TinyStories-1M", "llc": 32.0, "d_s": 21.422, "alpha": 0.33, "r2": 0.98},
        {"model": "TinyLlama-15M", "llc": 76.1, "d_s": 48.3, "alpha": 0.32, "r2": 0.98},
        {"model": "TinyStories-33M", "llc": 39.3, "d_s": 38.7, "alpha": 0.49, "r2": 0.98},
        {"model": "ResNet18", "llc": 72.05, "d_s": 0.57, "alpha": 0.004, "r2": 1.0},
        {"model": "ResNet34", "llc": 73.5, "d_s": 0.62, "alpha": 0.004, "r2": 1.0},
        {"model": "VGG16", "llc": 159.7, "d_s": 0.14, "alpha": 0.001, "r2": 1.0},
    ],
    # Table 2 (two moons, xi = 0.5): Bayes vs tempered SGD
    "table2": {"xi": 0.5, "kl": 0.009, "wasserstein": 0.002, "jensen_shannon": 0.003},
    # Table 4 (MNIST MLPs): mean (sd) over the LR x batch-size grid
    "table4": {
        "adam": {"d_s": 0.4061, "d_s_sd": 0.9068, "llc": 3.0957, "llc_sd": 5.7533,
                 "test_accuracy": 0.9043},
        "sgd": {"d_s": 7.8165, "d_s_sd": 10.2494, "llc": 12.5270, "llc_sd": 11.8393,
                "test_accuracy": 0.9406},
    },
    "claims": {
        "fig1": "two-moons ensemble: super-diffusive early (R ~ t^a, a > 1/2), sub-diffusive "
                "late (a < 1/2)",
        "fig2a": "d_s <= lambda_bar for every run (Lemma 3.4)",
        "fig2b": "lambda_bar strongly correlated with the total displacement (SGD)",
        "table4": "SGD: larger d_s and lambda and higher test accuracy than Adam",
        "fig4": "tempered SGD cluster masses ~ Bayes; raw SGD differs",
    },
}
